"""Issue 16, item 6: every file loader, fed mutated real files, random text and random bytes, either
succeeds or raises one TwinInputError naming the file; within a time bound and under a memory cap.

The memory cap is a real one: RLIMIT_AS is lowered to the process's current size plus
``HEADROOM`` for the duration of each test, so a loader that tries to expand an alias bomb or a
huge range fails with MemoryError (and the test with it) instead of swapping the machine.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError

resource = pytest.importorskip("resource")

ROOT = Path(__file__).resolve().parents[2]
HEADROOM = 1024 * 1024 * 1024  # bytes of address space a loader may add while it runs
DEADLINE_MS = 5000  # per example, generous for a shared 2-core CI machine

# Syntax and nasty values that turn a valid file into an interesting invalid one.
TOKENS = [
    "",
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "\n",
    "  ",
    "\t",
    "#",
    "|",
    ">",
    "? ",
    "---\n",
    "&a ",
    "*a",
    "<<: *a",
    "!!python/object/apply:os.system ['true']",
    "!!binary AAAA",
    ".nan",
    ".inf",
    "-.inf",
    "-1",
    "0",
    "1e308",
    "9" * 40,
    "~",
    "null",
    "true",
    "x" * 300,
    "\x00",
    "\udcff",
    "é",
    "\u202e",
    "[" * 200,
    "{a: " * 120,
]
ALIAS_BOMB = "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, n in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def _mutations(seed: str) -> st.SearchStrategy[bytes]:
    edit = st.tuples(st.integers(0, max(0, len(seed))), st.integers(0, 12), st.sampled_from(TOKENS))

    def apply(edits: list[tuple[int, int, str]]) -> bytes:
        text = seed
        for pos, cut, token in edits:
            pos = min(pos, len(text))
            text = text[:pos] + token + text[pos + cut :]
        return text.encode("utf-8", errors="surrogateescape")

    return st.lists(edit, min_size=1, max_size=6).map(apply)


def inputs(seed: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        _mutations(seed),
        _mutations(seed),  # weighted: mutations reach deeper into the loaders than noise does
        st.binary(max_size=400),
        st.text(max_size=400).map(lambda t: t.encode("utf-8", errors="surrogateescape")),
        st.sampled_from([b"", ALIAS_BOMB.encode(), b"a: " + b"[" * 5000, b"\xef\xbb\xbf" + seed.encode()]),
    )


@contextlib.contextmanager
def memory_cap() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = _vm_size()
    if size is None:
        yield
        return
    cap = size + HEADROOM if hard == resource.RLIM_INFINITY else min(hard, size + HEADROOM)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _vm_size() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_loader(loader: Callable[[Path], Any], path: Path, data: bytes) -> None:
    path.write_bytes(data)
    with memory_cap():
        try:
            loader(path)
        except TwinInputError as err:
            text = err.render()
            assert text.strip(), "an error must say something"
            assert len(text) < 20_000, "an error must not print an unbounded value"


def _fuzz(seed_file: str | Path, name: str, loader: Callable[[Path], Any], examples: int = 60) -> Callable[..., None]:
    seed = seed_file.read_text(encoding="utf-8") if isinstance(seed_file, Path) else seed_file

    @settings(
        max_examples=examples,
        deadline=DEADLINE_MS,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=inputs(seed))
    def test(tmp_path: Path, data: bytes) -> None:
        check_loader(loader, tmp_path / name, data)

    return test


# ---------------------------------------------------------------- the loaders


def _manifests(path: Path) -> None:
    from twin.spec.loader import load_documents

    load_documents([path])


def _cluster(path: Path) -> None:
    from twin.spec.cluster import load_cluster

    load_cluster(path)


def _scenario(path: Path) -> None:
    from twin.scenario import load_scenario

    load_scenario(path)


def _serving_scenario(path: Path) -> None:
    from twin.sim.serving_scenario import load_serving_scenario

    load_serving_scenario(path)


def _wva(path: Path) -> None:
    from twin.spec.wva import load_wva_documents

    load_wva_documents([path])


def _baseline(path: Path) -> None:
    from twin.experiments.check import load_baseline

    load_baseline(path)


def _recording(path: Path) -> None:
    from live.backends.jsonl import read_records

    list(read_records(path))


def _workers(path: Path) -> None:
    from live.workers import load_workers

    load_workers(path)


def _hardware(path: Path) -> None:
    from twin.hardware import load_catalog

    folder = path.parent / "profiles"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "A10.yaml").write_bytes(path.read_bytes())
    load_catalog(folder)


def _pods_csv(path: Path) -> None:
    from twin.spec.openb import load_pods

    load_pods(path)


def _nodes_csv(path: Path) -> None:
    from twin.spec.openb import load_nodes

    load_nodes(path)


def _traffic_csv(path: Path) -> None:
    from twin.sim.serving_traffic import load_csv_trace

    load_csv_trace(path)


def _replay_csv(path: Path) -> None:
    from twin.sim.generators import read_replay, read_usage_trace

    read_replay(path)
    read_usage_trace(path)


def _azure_csv(path: Path) -> None:
    from twin.sim.azure_trace import load_azure_trace

    load_azure_trace(path)


def _wva_install(path: Path) -> None:
    from twin.spec.wva_install import load_installation

    load_installation(path)


POD_CSV = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
    "p0,12000,16384,1,1000,,LS,Running,0,12537496,0\np1,6000,12288,1,460,V100M16|V100M32,BE,Failed,427061,,\n"
)
RECORDING = "\n".join((ROOT / "tests" / "data" / "live_synthetic_node.jsonl").read_text().splitlines()[:4]) + "\n"

test_fuzz_manifest_loader = _fuzz(ROOT / "examples" / "pods.yaml", "pods.yaml", _manifests)
test_fuzz_cluster_loader = _fuzz(ROOT / "examples" / "cluster.yaml", "cluster.yaml", _cluster)
test_fuzz_scenario_loader = _fuzz(ROOT / "scenarios" / "quickstart.yaml", "s.yaml", _scenario)
test_fuzz_serving_scenario_loader = _fuzz(ROOT / "scenarios" / "llm-serving.yaml", "s.yaml", _serving_scenario)
test_fuzz_wva_loader = _fuzz(ROOT / "examples" / "wva" / "llama-8b.yaml", "wva.yaml", _wva)
test_fuzz_baseline_loader = _fuzz(
    '{"version": 1, "scenarios": {"s.yaml": {"seed": 0, "overrides": [], "metrics": {"a": 1.5, "b": 2}}}}',
    "b.json",
    _baseline,
)
test_fuzz_recording_loader = _fuzz(RECORDING, "rec.jsonl", _recording)
test_fuzz_workers_loader = _fuzz(ROOT / "tests" / "data" / "live_synthetic_workers.yaml", "w.yaml", _workers)
test_fuzz_hardware_profile_loader = _fuzz(ROOT / "hw_profiles" / "A10.yaml", "A10.yaml", _hardware, examples=25)
test_fuzz_trace_pod_csv_loader = _fuzz(POD_CSV, "pods.csv", _pods_csv)
test_fuzz_trace_node_csv_loader = _fuzz(
    "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n", "n.csv", _nodes_csv
)
test_fuzz_traffic_csv_loader = _fuzz("time,input_tokens,output_tokens\n0.5,100,20\n1.25,80,3\n", "t.csv", _traffic_csv)
test_fuzz_wva_install_loader = _fuzz(ROOT / "examples" / "wva" / "install-multi-model.yaml", "i.yaml", _wva_install)
test_fuzz_azure_trace_loader = _fuzz(
    "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
    "2023-11-16 18:15:50.9951690,396,109\n",
    "azure.csv",
    _azure_csv,
)
test_fuzz_replay_csv_loader = _fuzz("time,value,lifetime,work_tflop\n0,0.5,60,10\n30,0.7,120,5\n", "r.csv", _replay_csv)


SEEDS: list[tuple[str | Path, str, Callable[[Path], Any]]] = [
    (ROOT / "examples" / "pods.yaml", "pods.yaml", _manifests),
    (ROOT / "examples" / "cluster.yaml", "cluster.yaml", _cluster),
    (ROOT / "scenarios" / "quickstart.yaml", "s.yaml", _scenario),
    (ROOT / "scenarios" / "llm-serving.yaml", "s.yaml", _serving_scenario),
    (ROOT / "examples" / "wva" / "llama-8b.yaml", "wva.yaml", _wva),
    (RECORDING, "rec.jsonl", _recording),
    (ROOT / "tests" / "data" / "live_synthetic_workers.yaml", "w.yaml", _workers),
    (ROOT / "hw_profiles" / "A10.yaml", "A10.yaml", _hardware),
    (POD_CSV, "pods.csv", _pods_csv),
    (ROOT / "examples" / "wva" / "install-multi-model.yaml", "install-multi-model.yaml", _wva_install),
]


@pytest.mark.parametrize(("seed", "name", "loader"), SEEDS, ids=[s[1] + ":" + s[2].__name__ for s in SEEDS])
def test_fuzz_seeds_load_cleanly(tmp_path: Path, seed: str | Path, name: str, loader: Callable[[Path], Any]) -> None:
    """The unmutated seeds are valid, so the fuzzers start from inputs that reach deep into each loader."""
    path = tmp_path / name
    path.write_text(seed.read_text(encoding="utf-8") if isinstance(seed, Path) else seed)
    if loader is _scenario or loader is _serving_scenario:
        shutil.copytree(ROOT / "scenarios", tmp_path, dirs_exist_ok=True)  # files they reference
        path.write_text(Path(seed).read_text(encoding="utf-8"))
    loader(path)


def test_the_memory_cap_is_real() -> None:
    with memory_cap(), pytest.raises(MemoryError):
        bytearray(2 * HEADROOM)


# ---------------------------------------------------------------- the CLI's numeric flags

_VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e999", "", "x", "1e7", "99999999999999999999", "4..2"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**12), 10**12).map(str),
)
_SERVING = {
    "--max-batch": "48", "--max-queue": "128", "--alpha": "12", "--beta": "0.05", "--gamma": "0.0005",
    "--input-tokens": "128", "--output-tokens": "512", "--ttft": "60", "--itl": "20", "--demand": "10",
}  # fmt: skip


@settings(max_examples=80, deadline=DEADLINE_MS)
@given(flag=st.sampled_from(sorted(_SERVING)), value=_VALUES, command=st.sampled_from(["size", "analyze"]))
def test_fuzz_serving_flags_never_crash(flag: str, value: str, command: str) -> None:
    """Any value in any flag of the queue model: an answer or a clear refusal, never a crash."""
    from click.testing import CliRunner

    from twin.cli import main

    flags = dict(_SERVING, **{flag: value})
    if command == "analyze":
        flags = {k: v for k, v in flags.items() if k not in ("--ttft", "--itl", "--demand")}
        flags["--rate"] = value if flag == "--demand" else "1"
    argv = ["serving", command, *[x for kv in flags.items() for x in kv]]
    with memory_cap():
        result = CliRunner().invoke(main, argv)
    assert result.exit_code in (0, 2), (argv, result.output)
    assert "Traceback" not in result.output and "internal error" not in result.output
