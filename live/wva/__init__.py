"""WVA on live metrics: the control loop against a Prometheus (``loop``, ``observe``, ``promql``,
``prom``), its exporter, the cluster port (``kube``), and the loopback endpoints of a simulated vLLM
fleet (``pods``, ``vllm_metrics``). See docs/live-wva.md."""
