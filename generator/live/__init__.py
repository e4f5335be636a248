"""Live machinery: namespaces, the real networkd, the kernel's state. Not a pure stage:
only the lab, verify and the tests use it."""
