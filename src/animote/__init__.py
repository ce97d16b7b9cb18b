"""animote: audio-driven face mesh animation, from a recording to a trained model.

The library knows nothing of Snakemake: the workflow's scripts unpack
``snakemake.*`` objects and call one function from here.
"""

__version__ = "0.1.0"


class RecordingError(RuntimeError):
    """A recording cannot be processed; the message names it and says why."""

    def __init__(self, recording: str, problem: str):
        self.recording = recording
        self.problem = problem
        super().__init__(f"recording '{recording}': {problem}")
