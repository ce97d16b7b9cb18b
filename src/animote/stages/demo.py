"""The demo recording (rule ``demo_recording``): a synthetic talking face with real speech and
claps, and the truth of what it drew (:mod:`animote.demo`)."""

from __future__ import annotations

from ..demo import DemoParams, make_demo


def demo_recording(*, output, params, **_) -> None:
    """Write the demo video, its truth table and its events (``output``) for ``params.demo``."""
    make_demo(output.video, output.truth, output.events, DemoParams.from_config({"demo": params.demo}))
