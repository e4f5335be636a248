"""`kvmnet verify`: run the generated check suites (output/tests/) against machines."""
