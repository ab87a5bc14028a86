import pickle
import textwrap

import pytest
import torch
from conftest import CLIP_SHAPE

from vaportok_rl.rewards import (
    Reward,
    RewardError,
    Rollout,
    check_reward_output,
    list_rewards,
    load_reward,
    required_needs,
    validate_reward,
)
from vaportok_rl.tokenizer.protocol import Encoded

BUILTINS = ("efficiency", "penalty", "diversity", "reconstruction", "generation")

PLUGIN = """
    import torch
    from vaportok_rl.rewards import Reward

    class Constant(Reward):
        \"\"\"Always the same value.\"\"\"
        name = "constant"

        def __init__(self, value: float = 1.0):
            self.value = value

        def __call__(self, rollout):
            return torch.full((rollout.B, rollout.G), self.value)
"""


def _write(folder, filename, source):
    path = folder / filename
    path.write_text(textwrap.dedent(source))
    return path


def make_rollout(keep, K=8, *, videos=None, reconstructions=None, prior_correct=None):
    """A hand-made rollout around keep [B, G, L]; everything the rewards under test do not read is zeros."""
    B, G, L = keep.shape
    return Rollout(
        videos=torch.zeros(B, L, *CLIP_SHAPE) if videos is None else videos,
        encoded=Encoded(latents=torch.zeros(B * L, K, 4), codes=torch.zeros(B * L, K, dtype=torch.long)),
        keep=keep,
        reconstructions=reconstructions,
        prior_correct=prior_correct,
        sc=torch.zeros(B, L),
        tc=torch.zeros(B, L),
        old_logp=torch.zeros(B, G, L),
        ref_logp=torch.zeros(B, G, L),
        num_latents=K,
    )


# ---------------------------------------------------------------------------------------------- loading


def test_file_plugin_loads_by_path_and_by_short_name(tmp_path):
    path = _write(tmp_path, "constant.py", PLUGIN)
    by_path = load_reward(str(path), {"value": 2.0})
    by_relative = load_reward("constant.py:Constant", search_paths=[tmp_path])
    by_name = load_reward("constant", {"value": 3.0}, search_paths=[tmp_path])
    assert by_path.name == by_relative.name == by_name.name == "constant"
    assert by_path.value == 2.0 and by_name.value == 3.0
    rollout = make_rollout(torch.ones(2, 3, 1, dtype=torch.long))
    assert check_reward_output(by_name, by_name(rollout), 2, 3).eq(3.0).all()


def test_loaded_plugins_pickle(tmp_path):
    reward = load_reward(str(_write(tmp_path, "constant.py", PLUGIN)))
    assert pickle.loads(pickle.dumps(reward)).name == "constant"


def test_dotted_paths_load():
    for spec in (
        "vaportok_rl.builtin_rewards.efficiency:Efficiency",
        "vaportok_rl.builtin_rewards.efficiency.Efficiency",
    ):
        assert load_reward(spec).name == "efficiency"
    assert load_reward("vaportok_rl.builtin_rewards.penalty", {"shape": "quadratic"}).shape == "quadratic"


def test_builtins_load_by_short_name_through_the_file_door():
    for name in BUILTINS:
        reward = load_reward(name)
        assert reward.name == name
        assert type(reward).__module__.startswith("_vaportok_reward_")  # loaded from its file, like a user plugin


def test_search_path_overrides_a_builtin(tmp_path):
    _write(tmp_path, "efficiency.py", PLUGIN)
    assert load_reward("efficiency", search_paths=[tmp_path]).name == "constant"


def test_reward_marker_picks_among_several_classes(tmp_path):
    source = PLUGIN + "\n    class Other(Constant):\n        name = 'other'\n"
    _write(tmp_path, "two.py", source)
    with pytest.raises(RewardError, match=r"two\.py.*exactly one reward class.*REWARD = ClassName"):
        load_reward("two", search_paths=[tmp_path])
    _write(tmp_path, "marked.py", source + "\n    REWARD = Other\n")
    assert load_reward("marked", search_paths=[tmp_path]).name == "other"
    assert load_reward("two.py:Other", search_paths=[tmp_path]).name == "other"


def test_duck_typed_plugin_without_the_base_class(tmp_path):
    _write(
        tmp_path,
        "duck.py",
        """
        import torch

        class Duck:
            name = "duck"
            needs = frozenset({"prior_correct"})

            def __call__(self, rollout):
                return torch.zeros(rollout.B, rollout.G)
    """,
    )
    reward = load_reward("duck", search_paths=[tmp_path])
    assert required_needs([reward, load_reward("reconstruction")]) == {"prior_correct", "reconstructions"}


def test_missing_name_names_the_file_and_the_fix(tmp_path):
    _write(tmp_path, "nameless.py", PLUGIN.replace('name = "constant"', ""))
    with pytest.raises(RewardError, match=r"nameless\.py.*missing or empty `name`.*name = "):
        load_reward("nameless", search_paths=[tmp_path])


def test_import_error_names_the_file_and_the_original_exception(tmp_path):
    _write(tmp_path, "broken.py", "import torch\nimport not_a_real_module_xyz\n")
    with pytest.raises(RewardError, match=r"broken\.py.*ModuleNotFoundError.*not_a_real_module_xyz"):
        load_reward("broken", search_paths=[tmp_path])


def test_unknown_short_name_lists_what_exists(tmp_path):
    with pytest.raises(RewardError, match=r"no file nope\.py.*efficiency"):
        load_reward("nope", search_paths=[tmp_path])
    with pytest.raises(RewardError, match="not found"):
        load_reward("missing/file.py", search_paths=[tmp_path])


def test_bad_kwargs_and_bad_needs_are_reported(tmp_path):
    with pytest.raises(RewardError, match=r"'penalty'.*Penalty.*kwargs"):
        load_reward("penalty", {"treshold": 0.1})
    with pytest.raises(RewardError, match="penalty.shape"):
        load_reward("penalty", {"shape": "cubic"})
    _write(tmp_path, "needy.py", PLUGIN.replace('name = "constant"', 'name = "needy"\n        needs = {"pixels"}'))
    with pytest.raises(RewardError, match=r"needy.*unknown needs \['pixels'\]"):
        load_reward("needy", search_paths=[tmp_path])


def test_validate_rejects_classes_and_wrong_call_signatures():
    class NoArg(Reward):
        name = "no_arg"

        def __call__(self):
            return torch.zeros(1, 1)

    with pytest.raises(RewardError, match="instantiate"):
        validate_reward(NoArg, "no_arg")
    with pytest.raises(RewardError, match="exactly one argument"):
        validate_reward(NoArg(), "no_arg")


@pytest.mark.parametrize(
    "value, expected",
    [
        ([[1.0, 2.0]], "expected a torch.Tensor"),
        (torch.zeros(2, 3, 1), r"expected shape \[B, G\] = \[2, 3\]"),
        (torch.zeros(2, 3, dtype=torch.long), "expected a floating-point tensor"),
        (torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]]), r"expected finite values.*b=0, g=1"),
        (torch.full((2, 3), float("inf")), "expected finite values"),
    ],
)
def test_bad_output_names_the_plugin_and_the_expectation(tmp_path, value, expected):
    reward = load_reward(str(_write(tmp_path, "constant.py", PLUGIN)))
    with pytest.raises(RewardError, match=rf"'constant'.*constant\.py.*{expected}"):
        check_reward_output(reward, value, 2, 3)


def test_list_rewards(tmp_path):
    _write(tmp_path, "constant.py", PLUGIN)
    _write(tmp_path, "efficiency.py", PLUGIN)
    _write(tmp_path, "broken.py", "raise RuntimeError('boom')\n")
    entries = {(e["spec"], e["builtin"]): e for e in list_rewards([tmp_path])}
    assert entries[("constant", False)]["doc"] == "Always the same value."
    assert entries[("broken", False)]["error"].count("boom") == 1
    assert entries[("efficiency", True)]["shadowed"] and not entries[("efficiency", False)]["shadowed"]
    assert entries[("reconstruction", True)]["needs"] == ["reconstructions"]
    assert {spec for spec, builtin in entries if builtin} >= set(BUILTINS)


# ---------------------------------------------------------------------------------------------- built-ins


def test_efficiency_formula():
    keep = torch.tensor([[[8, 4], [2, 1]]])  # [B=1, G=2, L=2], K = 8
    expected = torch.tensor([[(0 + 0.5) / 2, (0.75 + 0.875) / 2]])
    torch.testing.assert_close(load_reward("efficiency")(make_rollout(keep)), expected)


def test_penalty_formula():
    keep = torch.tensor([[[1, 8], [2, 3], [4, 4]]])  # [B=1, G=3, L=2]; K = 16 below, so t = 2 by default
    rollout = make_rollout(keep, K=16)
    torch.testing.assert_close(load_reward("penalty")(rollout), torch.tensor([[-0.5, 0.0, 0.0]]))
    quadratic = load_reward("penalty", {"shape": "quadratic", "threshold_tokens": 4})  # t = 4
    expected = -torch.tensor([[0.75**2, 0.5**2 + 0.25**2, 0.0]])
    torch.testing.assert_close(quadratic(rollout), expected)
    linear = load_reward("penalty", {"threshold": 0.25})  # t = 4
    torch.testing.assert_close(linear(rollout), -torch.tensor([[0.75, 0.5 + 0.25, 0.0]]))
    with pytest.raises(RewardError, match="not both"):
        load_reward("penalty", {"threshold": 0.25, "threshold_tokens": 4})
    with pytest.raises(ValueError, match="threshold_tokens.*<= K"):
        load_reward("penalty", {"threshold_tokens": 17})(rollout)


def test_diversity_formula():
    keep = torch.tensor([[[8, 8], [4, 4]], [[2, 2], [2, 2]]])  # [B=2, G=2, L=2], K = 8
    # video 0 is compared with video 1's mean (2), video 1 with video 0's mean (6)
    expected = torch.tensor([[6 / 8, 2 / 8], [4 / 8, 4 / 8]])
    torch.testing.assert_close(load_reward("diversity")(make_rollout(keep)), expected)
    torch.testing.assert_close(load_reward("diversity")(make_rollout(keep[:1])), torch.zeros(1, 2))


def test_reconstruction_formula():
    videos = torch.zeros(1, 2, *CLIP_SHAPE)  # [B=1, L=2, ...]
    reconstructions = torch.zeros(1, 2, 2, *CLIP_SHAPE)  # [B=1, G=2, L=2, ...]
    reconstructions[0, 1, 0] = 0.5  # path 1, clip 0: MSE 0.25; clip 1 exact
    rollout = make_rollout(torch.ones(1, 2, 2, dtype=torch.long), videos=videos, reconstructions=reconstructions)
    reward = load_reward("reconstruction")
    assert reward.needs == {"reconstructions"}
    torch.testing.assert_close(reward(rollout), torch.tensor([[0.0, -0.125]]))


def test_generation_formula():
    correct = torch.tensor([[[1, 1, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1]]], dtype=torch.bool)  # [1, L=2, K]
    keep = torch.tensor([[[2, 4], [4, 8]]])  # [B=1, G=2, L=2]
    expected = torch.tensor([[(1.0 + 0.75) / 2, (0.5 + 7 / 8) / 2]])
    reward = load_reward("generation")
    assert reward.needs == {"prior_correct"}
    torch.testing.assert_close(reward(make_rollout(keep, prior_correct=correct)), expected)


def test_builtins_pass_the_output_check_on_a_real_rollout(tokenizer, policy, videos, generator):
    from vaportok_rl.rollout import collect_rollout

    rewards = [load_reward(name) for name in BUILTINS]
    rollout = collect_rollout(tokenizer, policy, policy.reference_copy(), videos, group_size=3, mode="sample",
                              needs=required_needs(rewards), generator=generator)  # fmt: skip
    for reward in rewards:
        check_reward_output(reward, reward(rollout), rollout.B, rollout.G)
