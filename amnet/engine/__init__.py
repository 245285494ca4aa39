"""Framework-agnostic training and evaluation of AMNet: loops, schedules, checkpoints.

Nothing here knows Ray, MLflow or DVC: :func:`fit` reports each epoch through a callback, and
the pieces it is made of are public so that ``workflows/`` can drive them under
DistributedDataParallel. One file per job:

- ``build``: model, AdamW + warm-up/cosine schedule (§4.2), EMA, loaders (:class:`TrainState`)
- ``phases``: the two phases of a training step (§3.4, Eq. 2–3 then Eq. 11)
- ``epoch``: one pass over the loader
- ``fit``: the one epoch loop (validation every ``train.eval_every`` epochs, checkpoint,
  callback); :class:`FitHooks` let a Ray Train worker drive it (DDP, sampler, reporting)
- ``evaluate``: full-length prediction and its mAP
- ``checkpoint``: the checkpoint format, resume and inference loading
- ``seed``: seeding and RNG capture for exact resume

Both phases share one AdamW optimiser (so the AME keeps one set of moment estimates) and the
scheduler steps once per iteration, after phase 2. Without AME (``model.ame=false``) or with
``λ2 = 0`` phase 1 is skipped.
"""

from amnet.device import resolve_device
from amnet.engine.build import (
    TrainState,
    build_model,
    build_train_state,
    ema_update_fn,
    make_loader,
    train_epoch_setup,
)
from amnet.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_epochs,
    inference_checkpoint,
    load_checkpoint,
    load_model_for_inference,
    save_checkpoint,
)
from amnet.engine.epoch import LOSS_KEYS, train_one_epoch
from amnet.engine.evaluate import evaluate, ground_truth, predict
from amnet.engine.fit import VAL_PREFIX, FitHooks, fit
from amnet.engine.phases import autocast, batch_to, detect_phase, mask_phase
from amnet.engine.seed import restore_rng, seed_everything

__all__ = [
    "CHECKPOINT_FORMAT",
    "LOSS_KEYS",
    "VAL_PREFIX",
    "FitHooks",
    "TrainState",
    "autocast",
    "batch_to",
    "build_model",
    "build_train_state",
    "checkpoint_epochs",
    "detect_phase",
    "ema_update_fn",
    "evaluate",
    "fit",
    "ground_truth",
    "inference_checkpoint",
    "load_checkpoint",
    "load_model_for_inference",
    "make_loader",
    "mask_phase",
    "predict",
    "resolve_device",
    "restore_rng",
    "save_checkpoint",
    "seed_everything",
    "train_epoch_setup",
    "train_one_epoch",
]
