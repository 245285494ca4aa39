"""AMNet (WACV 2023): AME (Eq. 1–4), GAM (Eq. 5–8), heads (Eq. 9–10), label assignment."""

from amnet.model.amnet import AMNet
from amnet.model.output import ModelOutput

__all__ = ["AMNet", "ModelOutput"]
