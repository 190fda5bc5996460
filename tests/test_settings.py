"""Each setting declared once: the CNN and RNN commands' options come from their config fields."""
import dataclasses

import pytest

from nasp.cnn.cli import cnn
from nasp.cnn.config import CNNSearchConfig, CNNTrainConfig
from nasp.config import setting, setting_meta, with_defaults
from nasp.rnn.cli import rnn
from nasp.rnn.model import TRAIN_DROPOUTS, Dropouts
from nasp.rnn.search import SearchConfig
from nasp.rnn.train import TrainConfig


@pytest.mark.parametrize("group, name, config", [(cnn, "search", CNNSearchConfig), (cnn, "train", CNNTrainConfig),
                                                 (rnn, "search", SearchConfig), (rnn, "train", TrainConfig)])
def test_every_setting_of_a_config_is_its_commands_option_with_its_default_and_help(group, name, config):
    params = {p.name: p for p in group.commands[name].params}
    settings = [f for f in dataclasses.fields(config) if setting_meta(f)]
    assert settings
    for field in settings:
        option = params[field.name]
        assert option.default == field.default, field.name
        assert option.help.startswith(setting_meta(field)["help"]), field.name


def test_with_defaults_keeps_the_base_declaration_and_place():
    @dataclasses.dataclass
    class Base:
        a: int = setting(1, "A.")
        b: int = setting(2, "B.")

    @dataclasses.dataclass
    @with_defaults(a=10)
    class Sub(Base):
        c: int = setting(3, "C.")

    fields = {f.name: f for f in dataclasses.fields(Sub)}
    assert list(fields) == ["a", "b", "c"] and Sub().a == 10 and Base().a == 1
    assert setting_meta(fields["a"])["help"] == "A."


def test_rnn_dropouts_are_five_settings_or_one_object():
    assert TrainConfig().dropouts == TRAIN_DROPOUTS
    assert TrainConfig(dropoute=0.3).dropouts.embedding == 0.3
    given = Dropouts(0.1, 0.05, 0.1, 0.05, 0.0)
    cfg = TrainConfig(dropouts=given)
    assert cfg.dropouts == given and (cfg.dropout, cfg.dropouth, cfg.dropoutx, cfg.dropouti, cfg.dropoute) == (0.1, 0.05, 0.1, 0.05, 0.0)
