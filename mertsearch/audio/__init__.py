"""Audio in: decode files, bytes and arrays to mono float32 at the model's rate (decode), read tags
(tags), cut windows (windows). Import from the submodules: decode pulls in torch.
"""
