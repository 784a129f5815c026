from pathlib import Path

import pytest

from lmdemo.config import ConfigError, Settings
from lmdemo.models.registry import BUILTINS, resolve
from lmdemo.errors import ModelNotFoundError


def test_settings_from_env_reads_every_variable(tmp_path):
    s = Settings.from_env({"LMDEMO_HOME": str(tmp_path), "LMDEMO_DEVICE": "CPU", "LMDEMO_QUANTIZE": "4bit",
                           "LMDEMO_MEMORY_BUDGET_MB": "512"})
    assert s.home == tmp_path and s.device == "cpu" and s.quantize == "4bit" and s.memory_budget_mb == 512
    assert s.models_dir == tmp_path / "models"


def test_settings_defaults_live_under_user_cache():
    s = Settings.from_env({})
    assert s.home == Path.home() / ".cache" / "lmdemo" and s.quantize == "none" and s.device == "auto"


@pytest.mark.parametrize("env, word", [({"LMDEMO_QUANTIZE": "3bit"}, "quantize"),
                                       ({"LMDEMO_DEVICE": "tpu"}, "device"),
                                       ({"LMDEMO_MEMORY_BUDGET_MB": "lots"}, "LMDEMO_MEMORY_BUDGET_MB"),
                                       ({"LMDEMO_MEMORY_BUDGET_MB": "-5"}, "memory_budget_mb")])
def test_bad_settings_name_the_setting(env, word):
    with pytest.raises(ConfigError, match=word):
        Settings.from_env(env)


def test_resolve_builtin_folder_and_hub(tmp_path):
    assert resolve("gemma-3-270m").builtin is BUILTINS["gemma-3-270m"]
    assert resolve(str(tmp_path)).kind == "folder"
    assert resolve("someone/model").kind == "hub"
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve("./no/such/folder")
    with pytest.raises(ModelNotFoundError, match="No model given"):
        resolve("  ")
