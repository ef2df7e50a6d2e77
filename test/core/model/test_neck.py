"""The neck: a split's own neck climbs to stride 8 in learned steps that start as the identity."""

import torch

from mtl_split_core.model.neck import Neck, residual_refine


def test_a_fresh_refinement_step_adds_nothing():
    y = torch.rand(2, 16, 5, 7)
    assert torch.equal(residual_refine(16)(y), y * 0)


def test_refinement_steps_climb_in_x2_steps_to_the_output_size():
    """From a stride-32 level of a 60x100 input (ceil sizes 2x4) up to stride 8 (8x13)."""
    torch.manual_seed(0)
    neck = Neck((8, 8, 8, 8), 16, refine_steps=2).eval()
    sizes = []
    for block in neck.refine:
        block.register_forward_hook(lambda m, args, out: sizes.append(tuple(out.shape[-2:])))
    out = neck({3: torch.rand(1, 8, 2, 4)}, (8, 13))
    assert sizes == [(4, 7), (8, 13)] and tuple(out.shape) == (1, 16, 8, 13)
    assert set(neck.state_dict()) > set(Neck((8, 8, 8, 8), 16).state_dict())
