"""Forge's command line: compose the config with Hydra and hand it to `forge.run`.

    python launch.py task=sst2 model=minilm mode=kd loss=combined_far
    python launch.py experiment=demo
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from forge.config.errors import ConfigError
from forge.config.schema import register_schemas

register_schemas()


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    import forge

    try:
        forge.run(cfg)
    except ConfigError as err:
        print(f"forge: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
