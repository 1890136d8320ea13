"""Small multilayer perceptrons used across models."""

from __future__ import annotations

from torch import nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU, final_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] → sizes[1] → … → sizes[-1]`` with ``activation`` between them."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)
