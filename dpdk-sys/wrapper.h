/* Headers bound by bindgen. rte_config.h comes first through pkg-config's
 * "-include rte_config.h", repeated here so the file stands on its own. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_flow.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_version.h>

/* rte_errno is a per-lcore (thread-local) macro; this inline accessor is
 * exported by bindgen's wrap_static_fns like any other static inline. */
static inline int rte_errno_get(void) { return rte_errno; }
static inline void rte_errno_set(int value) { rte_errno = value; }
