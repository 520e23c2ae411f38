# Entry points for a fresh Debian 12 machine (as root): `make run`, `make test`.
# Each installs the system packages it needs first.

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := libdpdk-dev dpdk libclang-dev clang pkg-config libpcap-dev iproute2 ethtool iputils-ping tshark \
  frr dpdk-dev openvswitch-switch-dpdk fonts-dejavu-core dpkg-dev fakeroot lintian socat systemd python3-venv

.PHONY: deps build run test lint bench bench-smoke bench-offload bench-flood bench-scale bench-flowmod bench-packetin bench-stalls bench-micro bench-micro-smoke bench-count fuzz-smoke fuzz ci deb deb-test

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first"; exit 1; }

build: deps
	$(CARGO) build --release --workspace --bins

# The main job: vswitchd's embedded demo on DPDK virtual devices (no NIC, no
# hugepages), live statistics every second until Ctrl-C (DURATION=N stops it).
DURATION ?= 0
run: deps
	$(CARGO) build --release -p vswitch --bins
	@echo "vswitchd and vswitchctl are in target/release/ (export PATH=\$$PWD/target/release:\$$PATH)"
	target/release/vswitchd --duration $(DURATION)

# The Debian package (target/deb/vswitch_VERSION_ARCH.deb): the binaries, the
# conffile /etc/vswitch/vswitchd.toml, systemd units, man pages, completions.
deb: deps
	$(CARGO) build --release -p vswitch --bins
	bash packaging/build-deb.sh

# The package as an operator uses it (root): lintian, dpkg -i, systemd-analyze
# verify, the installed vswitchd's READY/STOPPING on a notify socket, remove
# (the conffile stays) and purge.
deb-test: deps
	$(CARGO) build --release -p vswitch --bins
	bash packaging/test-deb.sh

# All tests, DPDK ones included (they fail, never skip, when DPDK cannot start).
test: deps
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-tests=fail; \
	else \
	  echo "cargo-nextest not found; using cargo test (one EAL per test binary)"; \
	  $(CARGO) test --workspace; \
	fi

# Criterion micro-benchmarks: the flow core (parse, EMC, dpcls, rule table,
# encap), the burst engine alone on the harness's fwd and encap traffic
# (pinned to the last core), the offload manager's rule operations, the
# offload crate (lowering, the model e-switch).
bench-micro: deps
	$(CARGO) bench -p vswitch --features testing --bench flow_core
	taskset -c $$(($$(nproc) - 1)) $(CARGO) bench -p vswitch --features testing --bench burst
	$(CARGO) bench -p vswitch --bench offload_manager
	$(CARGO) bench -p offload --bench offload

# Instructions a packet in Engine::process for each case of the burst bench,
# counted by callgrind: a figure no host noise moves (needs valgrind).
BURST_CASES := fwd_1_flow fwd_1k_flows fwd_100k_flows encap_1_flow encap_1k_flows encap_100k_flows
bench-count: deps
	@command -v valgrind >/dev/null || { echo "bench-count needs valgrind: apt-get install valgrind"; exit 1; }
	@bin=$$($(CARGO) bench -p vswitch --features testing --bench burst --no-run --message-format=json 2>/dev/null \
	  | sed -n 's/.*"executable":"\([^"]*\/burst-[^"]*\)".*/\1/p' | tail -1); \
	[ -x "$$bin" ] || { echo "bench-count: the burst bench did not build"; exit 1; }; \
	for c in $(BURST_CASES); do \
	  out=$$(mktemp); \
	  said=$$(BURST_COUNT=2000 BURST_CASE=$$c valgrind --tool=callgrind --branch-sim=yes --toggle-collect=burst::counted_burst \
	    --callgrind-out-file=$$out $$bin 2>/dev/null) || { echo "$$c: callgrind failed"; rm -f $$out; exit 1; }; \
	  per=$$(echo "$$said" | sed -n 's/.* bursts of \([0-9]*\) packets$$/\1/p'); \
	  [ -n "$$per" ] || { echo "$$c: the bench did not say its burst size: $$said"; rm -f $$out; exit 1; }; \
	  awk -v c=$$c -v per=$$per '/^(summary|totals):/ { n = 2000 * per; \
	    printf "%-18s %7.1f instructions, %5.2f mispredicted branches a packet\n", c, $$2 / n, ($$4 + $$6) / n; exit }' $$out; \
	  rm -f $$out; \
	done

# The same, short (CI): checks they run and prints rough figures.
bench-micro-smoke: deps
	$(CARGO) bench -p vswitch --features testing --bench flow_core -- --warm-up-time 0.3 --measurement-time 1
	$(CARGO) bench -p vswitch --features testing --bench burst -- --warm-up-time 0.3 --measurement-time 1
	$(CARGO) bench -p vswitch --bench offload_manager -- --warm-up-time 0.3 --measurement-time 1
	$(CARGO) bench -p offload --bench offload -- --warm-up-time 0.3 --measurement-time 1

# The benchmark harness, short (CI): every scenario through vswitchd, Open
# vSwitch and the testpmd floor for a few seconds; checks it produces numbers.
bench-smoke: deps
	$(CARGO) build --release -p vswitch --bins -q
	$(CARGO) build --release -p vswitch-bench -q
	./target/release/vswitch-bench smoke
	./target/release/vswitch-bench offload --flows 20000 --packets 200000 --rules 1024 --warmup 4 --seconds 2 \
	  --out $${TMPDIR:-/tmp}/vswitch-bench-offload-smoke
	./target/release/vswitch-bench flood --peer ovs --flows 100000 --warmup 1 --seconds 1 \
	  --out $${TMPDIR:-/tmp}/vswitch-bench-flood-smoke
	./target/release/vswitch-bench scale --pmds 1,2 --peer ovs --warmup 1 --seconds 2 \
	  --out $${TMPDIR:-/tmp}/vswitch-bench-scale-smoke
	./target/release/vswitch-bench flowmod --rules 100000 --batch 1000 --peer ovs \
	  --out $${TMPDIR:-/tmp}/vswitch-bench-flowmod-smoke
	./target/release/vswitch-bench packetin --seconds 3 --peer ovs \
	  --out $${TMPDIR:-/tmp}/vswitch-bench-packetin-smoke

# OpenFlow FLOW_MOD adds per second through one connection (a BARRIER
# every 1,000), vswitchd and Open vSwitch on the same bytes.
bench-flowmod: deps
	$(CARGO) build --release -p vswitch --bins -q
	$(CARGO) build --release -p vswitch-bench -q
	./target/release/vswitch-bench flowmod --rules 100000 --batch 1000 --peer ovs

# OpenFlow packet-in round trips per second to an os-ken app that answers
# each with a packet-out (a venv with os-ken is made under target/ when
# missing), vswitchd and Open vSwitch with the same app.
bench-packetin: deps
	$(CARGO) build --release -p vswitch --bins -q
	$(CARGO) build --release -p vswitch-bench -q
	./target/release/vswitch-bench packetin --seconds 10 --peer ovs

# Flood resilience (~1 min): an established port's rate alone, under a
# new-flow flood on another port, and after a rule change, vswitchd and
# Open vSwitch; writes bench-results/flood.md.
bench-flood: deps
	$(CARGO) build --release -p vswitch --bins -q
	$(CARGO) build --release -p vswitch-bench -q
	./target/release/vswitch-bench flood --peer ovs --out bench-results

# Scaling over PMDs (~1 min here): 1 and 2 PMDs, a receive queue each, vswitchd and
# Open vSwitch; on a larger host pass PMDS=1,2,4,8 CORES=2,3,4,5,6,7,8,9.
PMDS ?= 1,2
CORES ?=
bench-scale: deps
	$(CARGO) build --release -p vswitch --bins -q
	$(CARGO) build --release -p vswitch-bench -q
	./target/release/vswitch-bench scale --pmds $(PMDS) $(if $(CORES),--cores $(CORES)) --peer ovs --out bench-results

# PMD stalls at 1M megaflows (~2 min, ~6 GB): stall counters while steady,
# across a dump-flows and across an add-rule that revalidates every megaflow.
bench-stalls: deps
	$(CARGO) build --release --workspace --bins -q
	benches/pmd-stalls.sh

# The offload scenario (~1 min): Zipf traffic over 100k flows into the model
# e-switch's 4,096 rules, hot policy against all; writes bench-results/offload.{json,md}.
bench-offload: deps
	$(CARGO) build --release -p vswitch --bins -q
	$(CARGO) build --release -p vswitch-bench -q
	./target/release/vswitch-bench offload --out bench-results

# The full side-by-side run (~25 min): vswitchd, Open vSwitch and the testpmd
# floor on every scenario and flow count; writes bench-results/report.{md,png}.
# Narrow it with e.g. BENCH_ARGS="--scenario fwd --flows 1000 --frame 64".
BENCH_ARGS ?=
bench: deps
	$(CARGO) build --release -p vswitch --bins -q
	$(CARGO) build --release -p vswitch-bench -q
	./target/release/vswitch-bench run --peer ovs $(BENCH_ARGS)

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer, address sanitizer) of every
# input from outside: packets (parse), rule text (rule), the TOML config
# (config), control-socket requests (control), the rte_flow arrays the
# model e-switch reads (rte_flow_model) and the kernel's rtnetlink messages
# (netlink), OpenFlow 1.3 messages (openflow). fuzz-smoke (CI) runs each briefly
# from its seeds; `make fuzz FUZZ_SECONDS=600` runs each for longer.
FUZZ_TARGETS = parse rule config control rte_flow_model netlink openflow
FUZZ_SECONDS ?= 20
FUZZ_CARGO = $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo '$(CARGO) +nightly' || echo 'RUSTC_BOOTSTRAP=1 $(CARGO)')
fuzz-smoke fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd vswitch/fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && cp seeds/$$t/* corpus/$$t/ && \
	  $(FUZZ_CARGO) fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E '^Done|panicked|ERROR|SUMMARY|Failing input' ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz target $$t failed (see vswitch/fuzz/artifacts/$$t)"; exit 1; }; \
	done

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

ci: lint test
