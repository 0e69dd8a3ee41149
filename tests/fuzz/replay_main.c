/* Replays a fuzz corpus through LLVMFuzzerTestOneInput without libFuzzer, so
 * `make check` runs every harness over its saved inputs (under ASan/UBSan in
 * the sanitizer build). Corpus: $srcdir/tests/fuzz/corpus/<name>, where the
 * program is called fuzz_<name>; or the directories/files given as args.
 * Prints TAP. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf;
  long n;
  if (f == NULL)
    return -1;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return -1;
  }
  /* Exact-size heap copy so ASan catches reads past the end. */
  buf = malloc(n ? (size_t)n : 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return -1;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  return 0;
}

static int run_path(const char *path, int *count) {
  struct stat st;
  DIR *d;
  struct dirent *e;
  char sub[4096];
  if (stat(path, &st) != 0)
    return -1;
  if (!S_ISDIR(st.st_mode)) {
    if (run_file(path) != 0)
      return -1;
    (*count)++;
    return 0;
  }
  if ((d = opendir(path)) == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
    if (run_path(sub, count) != 0) {
      closedir(d);
      return -1;
    }
  }
  closedir(d);
  return 0;
}

int main(int argc, char **argv) {
  int count = 0, rc = 0;
  /* Empty and tiny inputs first: every harness must survive them. */
  static const uint8_t tiny[] = {0x00, 0xff, 0x80, 0x80, 0x80};
  LLVMFuzzerTestOneInput(tiny, 0);
  for (size_t i = 1; i <= sizeof(tiny); i++)
    LLVMFuzzerTestOneInput(tiny, i);
  if (argc > 1) {
    for (int i = 1; i < argc && rc == 0; i++)
      rc = run_path(argv[i], &count);
  } else {
    const char *base = strrchr(argv[0], '/');
    const char *srcdir = getenv("top_srcdir");
    char dir[4096];
    base = base ? base + 1 : argv[0];
    if (strncmp(base, "lt-", 3) == 0)
      base += 3;
    if (strncmp(base, "fuzz_", 5) == 0)
      base += 5;
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s",
             srcdir ? srcdir : ".", base);
    rc = run_path(dir, &count);
    if (rc != 0)
      printf("# no corpus at %s\n", dir);
  }
  printf("%sok 1 - replayed %d corpus inputs without a crash\n1..1\n",
         rc == 0 && count > 0 ? "" : "not ", count);
  return rc == 0 && count > 0 ? 0 : 1;
}
