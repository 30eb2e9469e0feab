"""The live bridge: GPU backends (NVML, fake, recorder, replay), the node agent, actuators, exporter."""
