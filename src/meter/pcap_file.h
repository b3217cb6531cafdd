/*
 * In-memory pcap / pcapng parser behind mm_capture_open_file. It reads from
 * a borrowed buffer (the mmap of the file, or a fuzzer's input) and checks
 * every length before it reads; it never copies packet bytes.
 */
#ifndef MAMORI_METER_PCAP_FILE_H
#define MAMORI_METER_PCAP_FILE_H

#include "mamori/capture.h"

#include <stddef.h>
#include <stdint.h>

struct pcap_file;

/*
 * Parses the file header of buf (len bytes, borrowed for the reader's life).
 * name is used in messages. MM_EFORMAT / MM_ETRUNC with mm_last_error() set
 * when the header is not a pcap or pcapng header.
 */
int pcap_file_open(struct pcap_file **out, const uint8_t *buf, size_t len, const char *name);

/*
 * Next packet: 1 and *pkt filled, 0 at the clean end, negative on a corrupt
 * record (counted in errors; the reader then stays at the end).
 */
int pcap_file_next(struct pcap_file *pf, struct mm_raw_packet *pkt);

/* Adds this reader's error counters to errors[MM_CAPERR__COUNT]. */
void pcap_file_add_errors(const struct pcap_file *pf, uint64_t *errors);

void pcap_file_free(struct pcap_file *pf);

#endif
