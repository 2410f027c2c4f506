"""Models a user might bring, each taking a batch of 3×32×32 images: torchvision's
ResNet-18, MobileNetV2, DenseNet-121, SqueezeNet and a small ViT, and plain torch nets
with a transformer encoder, an LSTM, Conv1d, Conv3d and tied weights."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

SHAPE = (3, 32, 32)


class RowsAsTokens(nn.Module):
    """A transformer encoder over the 32 image rows (96 numbers each) as tokens."""

    def __init__(self, d: int = 32):
        super().__init__()
        self.embed = nn.Linear(96, d)
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=64, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        tokens = x.permute(0, 2, 1, 3).flatten(2)  # (B, 32 rows, 3 × 32)
        return self.head(self.encoder(self.embed(tokens)).mean(1))


class RowsLSTM(nn.Module):
    """An LSTM reading the image row by row."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(96, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = self.lstm(x.permute(0, 2, 1, 3).flatten(2))
        return self.head(out[:, -1])


class Signal1d(nn.Module):
    """Conv1d over the image as a 3-channel signal of 1024 samples."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 5, stride=4, padding=2)
        self.conv2 = nn.Conv1d(8, 8, 5, stride=4, padding=2)
        self.head = nn.Linear(8 * 64, 10)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x.flatten(2)))))
        return self.head(h.flatten(1))


class Volume3d(nn.Module):
    """Conv3d over the image as a one-channel 3 × 32 × 32 volume."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv3d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool3d((1, 4, 4))
        self.head = nn.Linear(4 * 16, 10)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x.unsqueeze(1)))))
        return self.head(self.pool(h).flatten(1))


class Tied(nn.Module):
    """An MLP whose two middle layers share one weight matrix."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3 * 32 * 32, 24)
        self.a = nn.Linear(24, 24)
        self.b = nn.Linear(24, 24)
        self.b.weight = self.a.weight  # tied
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        h = torch.relu(self.inp(x.flatten(1)))
        return self.head(torch.relu(self.b(torch.relu(self.a(h)))))


ZOO = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    "densenet121": lambda: torchvision.models.densenet121(num_classes=10),
    "squeezenet": lambda: torchvision.models.squeezenet1_1(num_classes=10),
    "vit": lambda: torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=10),
    "transformer": RowsAsTokens,
    "lstm": RowsLSTM,
    "conv1d": Signal1d,
    "conv3d": Volume3d,
    "tied": Tied,
}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = ZOO[name]()
    model.input_shape = SHAPE
    return model
