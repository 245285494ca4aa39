"""One typed configuration for every entry point, checked on load.

``schema.py`` the method's sections (one dataclass each) and :class:`Config`; ``extract.py`` the
``extract`` section; ``validate.py`` types and ranges; ``load.py`` params YAML, ``base:`` chains
and dotted overrides. An unknown key, a wrong type or an out-of-range value raises
:class:`ConfigError` naming the key and the file it came from. The workflow's own sections
(ray, sweep, tracking) and the whole params file are assembled in ``workflows.config``.
"""

from amnet.config.extract import ExtractConfig
from amnet.config.load import (
    MAX_PARAMS_BYTES,
    MAX_YAML_NODES,
    apply_override,
    from_dict,
    load_config,
)
from amnet.config.schema import (
    Config,
    DataConfig,
    EvalConfig,
    InferConfig,
    LossConfig,
    ModelConfig,
    SyntheticConfig,
    SyntheticI3DConfig,
    TrainConfig,
    flatten,
    schema_help,
)
from amnet.config.validate import setting
from amnet.errors import ConfigError

__all__ = [
    "MAX_PARAMS_BYTES", "MAX_YAML_NODES", "Config", "ConfigError", "DataConfig", "EvalConfig",
    "ExtractConfig", "InferConfig", "LossConfig", "ModelConfig", "SyntheticConfig",
    "SyntheticI3DConfig", "TrainConfig", "apply_override", "flatten", "from_dict", "load_config",
    "schema_help", "setting",
]
