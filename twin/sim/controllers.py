"""Controllers that plug into a run by scenario name (``controllers: [{name: ...}]``).

Each entry is an installer ``install(sim=SimHost, config=ControllerConfig)`` that starts the
controller's processes and returns it (the engine keeps it in ``Simulation.controllers``). Adding a
controller is one module with an installer and one line here; the registrations are plain imports,
so nothing in ``twin/sim`` is imported by name at run time.
"""

from __future__ import annotations

from twin.policy.registry import Registry
from twin.sim.limiter_loop import install_limiter_loop
from twin.sim.vertical import install_vertical_autoscaler

CONTROLLERS: Registry[object] = Registry("controller", field="controllers")
CONTROLLERS.register("limiter", install_limiter_loop)
CONTROLLERS.register("vertical-autoscaler", install_vertical_autoscaler)
