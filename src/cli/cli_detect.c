/* Inline detection for meter and collect (cli_detect.h). */
#include "cli/cli_detect.h"

#include "mamori/query.h"
#include "mamori/status.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Flows a detection thread hands its engine per call, at most. */
#define FEED_CHUNK 4096

/* Keeps the first failure of the detection threads; the tap returns it to the job. */
static void fail_detect(struct cli_detect *d, int rc)
{
	pthread_mutex_lock(&d->alert_lock);
	if (d->status == 0)
		d->status = rc;
	pthread_mutex_unlock(&d->alert_lock);
}

/* On a detection thread, or on the closing one once they have stopped. */
static void on_alert(void *ctx, const struct mm_alert *a)
{
	struct cli_detect *d = ctx;
	int rc;

	pthread_mutex_lock(&d->alert_lock);
	d->n_alerts++;
	rc = mm_alert_store_append(d->alerts, a);
	pthread_mutex_unlock(&d->alert_lock);
	if (rc)
		fail_detect(d, rc);
}

/* Flows every reader has fed: their slots are free. */
static uint64_t queue_done(const struct cli_detect_queue *q)
{
	uint64_t done = q->head[0];

	for (unsigned k = 1; k < q->n_readers; k++)
		if (q->head[k] < done)
			done = q->head[k];
	return done;
}

/*
 * Detection thread k: takes its oldest unread flows (a run that does not
 * wrap), feeds them with the lock released, and only then marks them
 * read, so the tap never overwrites a flow a thread is still reading.
 */
static void *detect_thread(void *arg)
{
	struct cli_detect_thread *t = arg;
	struct cli_detect_queue *q = &t->d->q;
	uint64_t *head = &q->head[t->index];

	pthread_mutex_lock(&q->lock);
	for (;;) {
		uint64_t take, done;
		size_t at;
		int rc;

		while (*head == q->tail && !q->closing)
			pthread_cond_wait(&q->not_empty, &q->lock);
		if (*head == q->tail)
			break; /* closing, and drained */
		at = (size_t)(*head % CLI_DETECT_QUEUE);
		take = q->tail - *head;
		if (take > CLI_DETECT_QUEUE - at)
			take = CLI_DETECT_QUEUE - at;
		if (take > FEED_CHUNK)
			take = FEED_CHUNK;
		pthread_mutex_unlock(&q->lock);
		rc = mm_detect_feed(t->engine, q->v + at, (size_t)take);
		if (rc)
			fail_detect(t->d, rc); /* the job ends; the queue is still drained */
		pthread_mutex_lock(&q->lock);
		done = queue_done(q);
		*head += take;
		if (queue_done(q) != done)
			pthread_cond_signal(&q->not_full);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static int queue_init(struct cli_detect_queue *q, unsigned n_readers)
{
	q->v = malloc(CLI_DETECT_QUEUE * sizeof(*q->v));
	if (!q->v)
		return mm_fail(MM_ENOMEM, "detect: queue of %d flows", CLI_DETECT_QUEUE);
	q->n_readers = n_readers;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	return 0;
}

static void queue_release(struct cli_detect_queue *q)
{
	if (!q->v)
		return;
	free(q->v);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->not_empty);
	pthread_cond_destroy(&q->not_full);
}

/*
 * The engines: one with every detector, or two splitting them
 * (MM_DETECT_SECOND_THREAD) under one hash key, so that together they
 * raise what one engine would.
 */
static int engines_new(struct cli_detect *d, struct mm_detect_config *cfg)
{
	unsigned second = cfg->enabled & MM_DETECT_SECOND_THREAD;
	int rc;

	/* One thread when either half would have nothing to do. */
	d->n_threads = cfg->threads >= 2 && second && (cfg->enabled & ~second) ? 2 : 1;
	if (!cfg->hash_key_set && (rc = mm_hash_key_random(&cfg->hash_key)) < 0)
		return rc;
	cfg->hash_key_set = true;
	for (unsigned k = 0; k < d->n_threads; k++) {
		struct mm_detect_config part = *cfg;

		if (d->n_threads == 2)
			part.enabled = k == 0 ? cfg->enabled & ~second : second;
		d->t[k] = (struct cli_detect_thread){ .d = d, .index = k };
		if ((rc = mm_detect_new(&d->t[k].engine, &part, on_alert, d)) < 0)
			return rc;
	}
	return 0;
}

static int threads_start(struct cli_detect *d)
{
	for (unsigned k = 0; k < d->n_threads; k++) {
		int err = pthread_create(&d->t[k].thread, NULL, detect_thread, &d->t[k]);

		if (err)
			return mm_fail(MM_EIO, "detect: cannot start detection thread %u: %s", k + 1, strerror(err));
		d->t[k].running = true;
	}
	return 0;
}

/* Lets the detection threads drain the queue and end; then the engines are this thread's again. */
static void threads_stop(struct cli_detect *d)
{
	if (!d->q.v)
		return;
	pthread_mutex_lock(&d->q.lock);
	d->q.closing = true;
	pthread_cond_broadcast(&d->q.not_empty);
	pthread_mutex_unlock(&d->q.lock);
	for (unsigned k = 0; k < d->n_threads; k++) {
		if (d->t[k].running)
			pthread_join(d->t[k].thread, NULL);
		d->t[k].running = false;
	}
}

static void release(struct cli_detect *d)
{
	threads_stop(d);
	for (unsigned k = 0; k < d->n_threads; k++)
		mm_detect_free(d->t[k].engine);
	queue_release(&d->q);
	mm_alert_store_close(d->alerts);
	mm_intel_close(d->intel);
	pthread_mutex_destroy(&d->alert_lock);
	memset(d, 0, sizeof(*d));
}

int cli_detect_open(struct cli_detect *d, const char *command, const char *data_dir, const struct mm_config *conf,
		    const char *authz, bool quiet)
{
	struct mm_detect_config cfg;
	char intel_dir[4096];
	int rc;

	memset(d, 0, sizeof(*d));
	d->command = command;
	rc = cli_guard_scan_begin(&d->g, command, data_dir, MM_ACT_ANALYZE, authz, 0, UINT64_MAX, quiet);
	if (rc)
		return rc;
	pthread_mutex_init(&d->alert_lock, NULL);
	mm_detect_config_default(&cfg);
	if ((size_t)snprintf(intel_dir, sizeof(intel_dir), "%s/intel", data_dir) >= sizeof(intel_dir))
		rc = mm_fail(MM_EINVAL, "detect: data directory path too long");
	if (rc == 0)
		rc = mm_detect_config_load(&cfg, conf);
	if (rc == 0 && (cfg.enabled & (1u << MM_DET_INTEL)))
		rc = mm_intel_open(intel_dir, &d->intel);
	cfg.intel = d->intel;
	if (rc == 0)
		rc = mm_alert_store_open(&d->alerts, data_dir);
	if (rc == 0)
		rc = engines_new(d, &cfg);
	if (rc == 0)
		rc = queue_init(&d->q, d->n_threads);
	if (rc == 0)
		rc = threads_start(d);
	if (rc) {
		json_t *result = json_pack("{s:b}", "ok", 0);
		struct cli_guarded_scan g = d->g;

		rc = cli_fail(command, rc);
		release(d);
		(void)cli_guard_scan_end(&g, result); /* the allowed act did not start: say so */
		json_decref(result);
		return rc;
	}
	return 0;
}

/* Puts n flows in the queue, waiting while it is full. With q->lock held. */
static void enqueue(struct cli_detect_queue *q, const struct mm_flow *flows, size_t n)
{
	while (n > 0) {
		size_t at, room;

		if (q->tail - queue_done(q) == CLI_DETECT_QUEUE) {
			q->full_waits++;
			while (q->tail - queue_done(q) == CLI_DETECT_QUEUE)
				pthread_cond_wait(&q->not_full, &q->lock);
		}
		at = (size_t)(q->tail % CLI_DETECT_QUEUE);
		room = CLI_DETECT_QUEUE - (size_t)(q->tail - queue_done(q));
		if (room > CLI_DETECT_QUEUE - at)
			room = CLI_DETECT_QUEUE - at; /* up to the end of the array; the rest next round */
		if (room > n)
			room = n;
		memcpy(q->v + at, flows, room * sizeof(*flows));
		q->tail += room;
		if (q->tail - queue_done(q) > q->peak)
			q->peak = q->tail - queue_done(q);
		flows += room;
		n -= room;
		pthread_cond_broadcast(&q->not_empty);
	}
}

/*
 * The tap, on the job's thread: queues the flows inside the
 * authorization's scope (the others are not analysed, only counted).
 */
static int feed(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct cli_detect *d = ctx;
	size_t start = 0;
	int rc;

	pthread_mutex_lock(&d->q.lock);
	for (size_t i = 0; i < n; i++) {
		if (mm_query_match(d->g.d.query, &flows[i]) && flows[i].last_ns >= d->g.d.since_ns &&
		    flows[i].first_ns <= d->g.d.until_ns)
			continue;
		d->out_of_scope++;
		enqueue(&d->q, flows + start, i - start);
		start = i + 1;
	}
	enqueue(&d->q, flows + start, n - start);
	pthread_mutex_unlock(&d->q.lock);
	pthread_mutex_lock(&d->alert_lock);
	rc = d->status;
	pthread_mutex_unlock(&d->alert_lock);
	return rc;
}

struct mm_flow_tap cli_detect_tap(struct cli_detect *d)
{
	return (struct mm_flow_tap){ .fn = feed, .ctx = d };
}

int cli_detect_close(struct cli_detect *d, FILE *stats, int exit_code)
{
	const char *command = d->command;
	struct mm_detect_stats st;
	struct cli_guarded_scan g = d->g;
	json_t *result;
	int rc = 0;

	if (!d->q.v)
		return exit_code;
	threads_stop(d);
	for (unsigned k = 0; k < d->n_threads && rc == 0; k++)
		rc = mm_detect_flush(d->t[k].engine);
	if (rc == 0)
		rc = d->status;
	/* Every engine processed every flow: the first one's flow counts stand for all. */
	mm_detect_stats(d->t[0].engine, &st);
	if (stats)
		fprintf(stats,
			"  %-34s %" PRIu64 " flows, %" PRIu64 " alerts, %" PRIu64 " outside the authorization's scope, "
			"%" PRIu64 " late; detection threads %u, queue of %d flows: %" PRIu64 " waits when full, at most %" PRIu64
			" queued\n",
			"detect", st.flows_processed, d->n_alerts, d->out_of_scope, st.flows_late, d->n_threads,
			CLI_DETECT_QUEUE, d->q.full_waits, d->q.peak);
	result = json_pack("{s:b,s:I,s:I}", "ok", rc == 0, "flows", (json_int_t)st.flows_processed, "alerts",
			   (json_int_t)d->n_alerts);
	release(d);
	if (cli_guard_scan_end(&g, result) != 0 && rc == 0)
		rc = MM_EIO;
	json_decref(result);
	if (rc && exit_code == CLI_EXIT_OK)
		return cli_fail(command, rc);
	return exit_code;
}
