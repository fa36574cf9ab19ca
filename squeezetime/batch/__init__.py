"""``squeezetime batch``: classify a whole corpus of videos into a resumable JSON-lines file.

    from squeezetime.batch import ModelSpec, ResultsFile, find_videos, run_local

    with ResultsFile("results.jsonl") as out:                     # reads what an earlier run wrote
        todo = [p for p in find_videos("corpus/") if p not in out.done]
        summary = run_local(ModelSpec("demo").load(), todo, out, workers=2)

Locally, worker processes decode while the main process runs the network (``local``); with Ray, the same job
is a Ray Data pipeline on a cluster (``ray_job``, needs the ``[ray]`` extra). Both write the same lines through
``ResultsFile``, so either can resume the other's file.
"""
from .inputs import VIDEO_EXTENSIONS, find_videos
from .local import run_local
from .results import ResultsFile, Summary, error_record, prediction_record
from .spec import ModelSpec

__all__ = ["ModelSpec", "ResultsFile", "Summary", "VIDEO_EXTENSIONS", "error_record", "find_videos",
           "prediction_record", "run_local"]
