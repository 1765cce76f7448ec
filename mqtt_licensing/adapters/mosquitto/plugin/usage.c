/*
 * Usage of metered connections, exactly once into the agent's ledger.
 *
 * topics.c counts what is queued to metered clients into the open counters (two adds). Once a
 * second the open counters become a numbered batch, sent to the agent; the batch is kept until
 * the agent acknowledges that number, which it does only once the batch is on disk. An agent
 * killed before that gets the same batch again when it (or the next one) connects, and it
 * counts a number it already saved only once. One batch is in flight at a time: while it waits,
 * new usage gathers in the open counters, so memory stays constant however long the agent is away.
 * Numbers are per broker run (the agent keys them by the run's boot id).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "licensing.h"

#define RESEND_AFTER 10 /* seconds: a batch the agent received but could not save comes again */

unsigned long long lic_usage_messages, lic_usage_bytes;

static struct {
	bool held;
	unsigned long long sequence, messages, bytes;
} batch;
static unsigned long long next_sequence = 1;
static time_t sent_at;

static void send_batch(void)
{
	char s[24], m[24], b[24];
	struct lic_field f[3] = { { s, 0 }, { m, 0 }, { b, 0 } };
	f[0].len = (uint32_t)snprintf(s, sizeof(s), "%llu", batch.sequence);
	f[1].len = (uint32_t)snprintf(m, sizeof(m), "%llu", batch.messages);
	f[2].len = (uint32_t)snprintf(b, sizeof(b), "%llu", batch.bytes);
	lic_link_send(F_USAGE, f, 3, false);
	sent_at = time(NULL);
}

void lic_usage_tick(void)
{
	time_t now;
	if(!lic_link_up()) return;
	now = time(NULL);
	if(batch.held){
		if(now - sent_at >= RESEND_AFTER) send_batch();
		return;
	}
	if(lic_usage_messages == 0 || now == sent_at) return;
	batch.held = true;
	batch.sequence = next_sequence++;
	batch.messages = lic_usage_messages;
	batch.bytes = lic_usage_bytes;
	lic_usage_messages = lic_usage_bytes = 0;
	send_batch();
}

void lic_usage_resend(void)
{
	if(batch.held) send_batch();
}

/* The agent saved batch <sequence>. False: not a number (the frame is refused). */
bool lic_usage_acknowledged(const struct lic_field *sequence)
{
	char text[24];
	char *end;
	unsigned long long n;
	if(sequence->len == 0 || sequence->len >= sizeof(text)) return false;
	memcpy(text, sequence->data, sequence->len);
	text[sequence->len] = '\0';
	n = strtoull(text, &end, 10);
	if(*end != '\0') return false;
	if(batch.held && n == batch.sequence) batch.held = false; /* an older number: a resend's echo */
	return true;
}
