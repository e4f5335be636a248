"""`kvmnet vm`: boot what kvmnet generated in virtual machines and check it (the VM tier)."""
