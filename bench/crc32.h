/*
 * crc32.h - CRC-32 (IEEE 802.3, as zlib's crc32 and nginx's ngx.crc32_long), shared by
 * bench_module.c (POST /upload answers the body's CRC) and hostile.c (which checks it).
 * Call crc32_init() once before crc32_update().
 */
#ifndef BENCH_CRC32_H
#define BENCH_CRC32_H

#include <stddef.h>
#include <stdint.h>

static uint32_t crc32_table[256];

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc32_table[i] = c;
    }
}

/* The CRC of `crc`'s data followed by p[0..n); start with 0. */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--)
        crc = crc32_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#endif
