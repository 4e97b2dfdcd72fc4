// Loads a shared object the way Node loads an addon (dlopen, RTLD_NOW), but with musl's dynamic
// loader: built with Debian's musl-gcc, so it runs on this glibc machine as a musl process.
//   dlopen <file> [symbol]               load it, then look up `symbol` (exit 1 on any failure)
//   dlopen <file> alloc_bench N T R      also run alloc_bench(N, T) R times, print each time in ms
// Used by scripts/build-all.mjs (can musl load streamcast.linux-x64-musl.node?) and by
// bench/musl-alloc (mimalloc against musl's malloc inside a dlopen()ed library).
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <file> [symbol [iters threads repeats]]\n", argv[0]);
    return 2;
  }
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  printf("dlopen: loaded %s\n", argv[1]);
  if (argc < 3) return 0;
  void *sym = dlsym(h, argv[2]);
  if (!sym) {
    fprintf(stderr, "dlsym %s: %s\n", argv[2], dlerror());
    return 1;
  }
  printf("dlsym: %s found\n", argv[2]);
  if (argc < 6) return 0;
  uint64_t (*bench)(uint64_t, uint32_t) = (uint64_t(*)(uint64_t, uint32_t))sym;
  uint64_t iters = strtoull(argv[3], NULL, 10);
  uint32_t threads = (uint32_t)strtoul(argv[4], NULL, 10);
  int repeats = atoi(argv[5]);
  for (int i = 0; i < repeats; i++) printf("run %d: %.1f ms\n", i + 1, bench(iters, threads) / 1e6);
  return 0;
}
