"""`kvmnet image`: build a golden image with diskimage-builder and the generated elements."""
