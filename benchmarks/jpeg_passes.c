/*
 * What one pass over a JPEG's entropy-coded data costs, three ways, with the system's
 * libjpeg(-turbo): keeping every DCT coefficient (jpeg_read_coefficients, what a decoder
 * that reads a photo once and renders any scale or region later would start from), and
 * decoding to pixels at 1/8 and 1/4 scale (libjpeg's scaled IDCT, what slimface's first
 * decode of a big photo does).
 *
 *   cc -O2 benchmarks/jpeg_passes.c -ljpeg -o /tmp/jpeg_passes
 *   find /tmp/photos -name '*.jpg' | sort | xargs /tmp/jpeg_passes   # table + JSON line
 *
 * Files are read into memory first; only decoding is timed, one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void start(struct jpeg_decompress_struct *c, struct jpeg_error_mgr *e,
                  unsigned char *buf, long n) {
    c->err = jpeg_std_error(e);
    jpeg_create_decompress(c);
    jpeg_mem_src(c, buf, (unsigned long)n);
    jpeg_read_header(c, TRUE);
}

/* Seconds to read every coefficient of the file, kept in memory. */
static double coefficients(unsigned char *buf, long n) {
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr e;
    double t0 = now();
    start(&c, &e, buf, n);
    jpeg_read_coefficients(&c);
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    return now() - t0;
}

/* Seconds to decode the file to RGB pixels at 1/denom scale. */
static double pixels(unsigned char *buf, long n, int denom) {
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr e;
    double t0 = now();
    start(&c, &e, buf, n);
    c.scale_num = 1;
    c.scale_denom = denom;
    jpeg_start_decompress(&c);
    JSAMPROW row = malloc((size_t)c.output_width * c.output_components);
    while (c.output_scanline < c.output_height)
        jpeg_read_scanlines(&c, &row, 1);
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    free(row);
    return now() - t0;
}

static unsigned char *read_file(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*n);
    if (fread(buf, 1, *n, f) != (size_t)*n) { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

static void cpu_model(char *out, size_t size) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, size, "unknown");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) { snprintf(out, size, "%s", v + 2); out[strcspn(out, "\n")] = 0; }
            break;
        }
    }
    if (f) fclose(f);
}

int main(int argc, char **argv) {
    double coef = 0, eighth = 0, quarter = 0;
    int files = 0;
    for (int i = 1; i < argc; i++) {
        long n;
        unsigned char *buf = read_file(argv[i], &n);
        if (!buf) { fprintf(stderr, "jpeg_passes: cannot read %s\n", argv[i]); return 1; }
        coef += coefficients(buf, n);
        eighth += pixels(buf, n, 8);
        quarter += pixels(buf, n, 4);
        files++;
        free(buf);
    }
    if (!files) { fprintf(stderr, "usage: jpeg_passes FILE.jpg...\n"); return 2; }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("%d files, one thread, %s, libjpeg %d\n", files, cpu, JPEG_LIB_VERSION);
    printf("| pass | ms per file |\n|---|---|\n");
    printf("| every coefficient kept | %.2f |\n| pixels at 1/8 | %.2f |\n"
           "| pixels at 1/4 | %.2f |\n", coef / files * 1e3, eighth / files * 1e3,
           quarter / files * 1e3);
    printf("{\"files\": %d, \"cpu\": \"%s\", \"ms_coefficients\": %.3f, \"ms_eighth\": %.3f, "
           "\"ms_quarter\": %.3f}\n", files, cpu, coef / files * 1e3, eighth / files * 1e3,
           quarter / files * 1e3);
    return 0;
}
