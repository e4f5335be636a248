# Two commands for a newcomer on a fresh Debian 12 machine (as root):
#   make build   set up .venv, install kvmnet, build the bundled default profile into output/
#   make test    install what the tests need (apt and pip), then run every tier (VMs included)
# Both are idempotent; CI (.ci/run) runs `make test`.

PYTHON ?= python3
VENV   := .venv
PIP    := $(VENV)/bin/pip
# Programs the consumer tests run for real (netplan and udevadm are fetched by the tests
# themselves with `apt-get download`, refreshing the package index if they must).
APT_TEST_PACKAGES := iputils-ping ethtool iproute2 systemd shellcheck dbus debconf util-linux \
	libvirt-clients libxml2-utils libvirt-dev pkg-config gcc python3-dev cloud-init genisoimage \
	iperf3 graphviz openssh-server openssh-client strace \
	debootstrap qemu-utils fdisk e2fsprogs file git vagrant vagrant-libvirt \
	qemu-system-x86 libvirt-daemon-system libvirt-daemon-driver-qemu dnsmasq-base

.PHONY: build test venv test-deps bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

build: venv
	$(VENV)/bin/kvmnet build -o output

test-deps: venv
	@missing=$$(for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Every tier, the VM tier included (plain `pytest` leaves it out for quick runs: it
# builds golden images and boots VMs); only the deep fuzzing (`pytest -m fuzz`) is not run.
test: test-deps
	$(VENV)/bin/pytest -m 'not fuzz'

bench: venv
	$(VENV)/bin/python -m bench.render_vs_netplan
	$(VENV)/bin/python -m bench.fleet_scaling
	$(VENV)/bin/python -m bench.lab_scale

clean:
	rm -rf output .cache .pytest_cache .mypy_cache .ruff_cache
