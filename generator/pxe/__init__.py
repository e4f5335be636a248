"""`kvmnet pxe`: the boot service of a built output tree, run on this machine."""
