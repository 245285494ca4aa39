"""``amnet detect``: run a trained model on feature files, write ActivityNet results JSON.

Input: one ``<video_id>.npy`` (T × C, float32/float64) or a folder of them. Output: the
ActivityNet results layout ``{"version", "results": {video: [{"label", "score",
"segment": [start, end]}]}, "external_data"}`` (``--json OUT``, ``-`` = stdout) and a
readable table of each video's best detections on stdout.

One module per job: ``inputs.py`` (the feature files and each video's timing), ``model.py``
(a checkpoint or a registered model, and which ``-s`` overrides apply), ``cli.py`` (the
arguments, the detection loop, the table).

The model is a checkpoint written by the engine (``amnet train``) or a registered MLflow
model ``models:/<name>@<alias>`` / ``models:/<name>/<version>`` (loaded with
:func:`workflows.tracking.load_registered_model`, no params file needed). ``-p`` supplies the
``tracking.*`` settings (where the registry is); ``-s`` overrides ``tracking.*`` and the
model's ``infer.*`` decoding settings (Soft-NMS, thresholds); everything else comes from the
model.
"""

from workflows.detect.cli import DEFAULT_PARAMS, add_arguments, detect, format_table, run
from workflows.detect.inputs import (
    Sidecar,
    VideoTiming,
    check_header,
    list_inputs,
    read_sidecar,
    video_timing,
)
from workflows.detect.model import load_model, split_overrides

__all__ = ["DEFAULT_PARAMS", "Sidecar", "VideoTiming", "add_arguments", "check_header", "detect",
           "format_table", "list_inputs", "load_model", "read_sidecar", "run", "split_overrides",
           "video_timing"]
