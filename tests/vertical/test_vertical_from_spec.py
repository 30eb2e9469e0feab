"""What users write (WorkloadProfile, SchedulingConfigTemplate) becomes the autoscaler's config."""

from __future__ import annotations

from vertical_helpers import res

from twin.policy.vertical.config import resolve_config
from twin.policy.vertical.from_spec import config_from_spec, rules_from_template
from twin.policy.vertical.types import TargetResource
from twin.spec.tensorfusion import AutoScalingConfig, SchedulingConfigTemplate


def test_profile_config_converts() -> None:
    spec = AutoScalingConfig.model_validate(
        {
            "autoSetResources": {
                "enable": True,
                "targetResource": "compute",
                "marginFraction": "0.2",
                "historyDataPeriod": "4h",
            },
            "cronScalingRules": [
                {
                    "enable": True,
                    "name": "day",
                    "start": "0 9 * * *",
                    "end": "0 17 * * *",
                    "desiredResources": {
                        "requests": {"tflops": "10", "vram": "4Gi"},
                        "limits": {"tflops": "20", "vram": "4Gi"},
                    },
                }
            ],
            "externalScaler": {"enable": True, "url": "http://scaler"},
        }
    )
    cfg = config_from_spec(spec)
    asr = cfg.auto_set_resources
    assert asr is not None and asr.active and asr.target_resource is TargetResource.COMPUTE
    assert asr.margin_fraction == 0.2 and asr.history_data_period_s == 4 * 3600.0
    [rule] = cfg.cron_scaling_rules
    assert rule.name == "day" and rule.enable and rule.desired == res(10, 4, 20, 4)
    assert cfg.external_scaler is not None and cfg.external_scaler.url == "http://scaler"
    assert not config_from_spec(None).enabled


def test_template_rules_convert_and_first_match_wins() -> None:
    template = SchedulingConfigTemplate.model_validate(
        {
            "metadata": {"name": "pool"},
            "spec": {
                "verticalScalingRules": [
                    {
                        "name": "gold",
                        "selector": {
                            "matchLabels": {"team": "ml"},
                            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}],
                        },
                        "autoScaling": {"autoSetResources": {"enable": True, "targetResource": "vram"}},
                    },
                    {
                        "name": "rest",
                        "selector": {},
                        "autoScaling": {"autoSetResources": {"enable": True, "targetResource": "all"}},
                    },
                ]
            },
        }
    )
    rules = rules_from_template(template)
    assert [r.name for r in rules] == ["gold", "rest"]
    gold = resolve_config(labels={"team": "ml", "tier": "gold"}, template_rules=rules)
    assert gold.target is TargetResource.VRAM
    other = resolve_config(labels={"team": "ml", "tier": "bronze"}, template_rules=rules)
    assert other.target is TargetResource.ALL
