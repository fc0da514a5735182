/*
 * qmpdirty lab guest: dirty memory at a known rate.
 *
 * Usage: dirtier [RATE_MIB [WSS_MIB]]   (else $QMPDIRTY_RATE_MIB / $QMPDIRTY_WSS_MIB,
 * else 16 and 64). Allocates WSS_MIB of memory, touches every page once, prints
 * "qmpdirty-dirtier: ready rate_mib=R wss_mib=W", then writes RATE_MIB MiB/s of
 * 4 KiB pages, sequentially through the working set, wrapping. Each write stores a
 * new counter value, so the page's *content* changes: QEMU's page-sampling
 * dirty-rate mode hashes contents and would not see a constant being rewritten.
 * Pacing is against CLOCK_MONOTONIC in STEP_NS steps: every step writes however
 * many pages are due. RATE_MIB 0 means idle.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 4096UL
#define PAGES_PER_MIB (1048576UL / PAGE_SIZE)
#define STEP_NS 2000000L           /* 2 ms between pacing steps */
#define MAX_BACKLOG_NS 250000000L  /* after a stall (VM paused), do not burst more than this */

static long parse_mib(const char *text, const char *what)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 1048576) {
        fprintf(stderr, "qmpdirty-dirtier: bad %s '%s'\n", what, text);
        exit(2);
    }
    return value;
}

static const char *setting(int argc, char **argv, int index, const char *env, const char *dflt)
{
    if (argc > index)
        return argv[index];
    const char *value = getenv(env);
    return (value != NULL && *value != '\0') ? value : dflt;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Pages due after elapsed_ns, without overflowing 64 bits for years. */
static uint64_t pages_due(int64_t elapsed_ns, uint64_t pages_per_s)
{
    uint64_t secs = (uint64_t)elapsed_ns / 1000000000ULL;
    uint64_t rest = (uint64_t)elapsed_ns % 1000000000ULL;
    return secs * pages_per_s + rest * pages_per_s / 1000000000ULL;
}

static void sleep_until(int64_t deadline_ns)
{
    struct timespec ts = {
        .tv_sec = deadline_ns / 1000000000LL,
        .tv_nsec = deadline_ns % 1000000000LL,
    };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

int main(int argc, char **argv)
{
    long rate_mib = parse_mib(setting(argc, argv, 1, "QMPDIRTY_RATE_MIB", "16"), "rate");
    long wss_mib = parse_mib(setting(argc, argv, 2, "QMPDIRTY_WSS_MIB", "64"), "working set");
    if (wss_mib == 0) {
        fprintf(stderr, "qmpdirty-dirtier: working set must be at least 1 MiB\n");
        return 2;
    }
    uint64_t pages = (uint64_t)wss_mib * PAGES_PER_MIB;
    unsigned char *wss = mmap(NULL, pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (wss == MAP_FAILED) {
        perror("qmpdirty-dirtier: mmap");
        return 1;
    }
    uint64_t counter = 0;
    for (uint64_t page = 0; page < pages; page++)
        memcpy(wss + page * PAGE_SIZE, &(uint64_t){++counter}, sizeof counter);

    printf("qmpdirty-dirtier: ready rate_mib=%ld wss_mib=%ld\n", rate_mib, wss_mib);
    fflush(stdout);
    if (rate_mib == 0)
        for (;;)
            pause();

    uint64_t pages_per_s = (uint64_t)rate_mib * PAGES_PER_MIB;
    uint64_t max_backlog = pages_per_s * MAX_BACKLOG_NS / 1000000000LL + 1;
    int64_t start = now_ns();
    uint64_t written = 0;
    uint64_t next_page = 0;
    for (int64_t deadline = start;; deadline += STEP_NS) {
        int64_t now = now_ns();
        if (now < deadline) {
            sleep_until(deadline);
            now = deadline;
        } else if (now - deadline > MAX_BACKLOG_NS) {
            deadline = now;  /* re-anchor the schedule after a long stall */
        }
        uint64_t due = pages_due(now - start, pages_per_s);
        if (due > written + max_backlog)
            written = due - max_backlog;
        for (; written < due; written++) {
            memcpy(wss + next_page * PAGE_SIZE, &(uint64_t){++counter}, sizeof counter);
            if (++next_page == pages)
                next_page = 0;
        }
    }
}
