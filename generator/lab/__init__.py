"""`kvmnet lab`: a whole profile realized in network namespaces on one machine, and tested."""
