import torch.utils.data


class VisionDataset(torch.utils.data.Dataset):
    """Stand-in base class; streaming.vision subclasses it at import time."""

    def __init__(self, root=None, transforms=None, transform=None, target_transform=None):
        self.root = root
        self.transform = transform
        self.target_transform = target_transform


class CIFAR10(VisionDataset):
    pass
