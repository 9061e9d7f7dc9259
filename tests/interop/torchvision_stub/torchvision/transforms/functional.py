def to_tensor(pic):
    raise NotImplementedError("torchvision stand-in: to_tensor is not available in the interop venv")
