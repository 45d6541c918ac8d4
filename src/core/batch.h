/* batch.h -- a request handed to the thread that commits the store's
 * writes, to run inside its next batch (store.h run_batched): no thread of
 * its own sleeps until the commit. Declared in core/ because http/ makes
 * one and the store runs it, and neither sees the other. */
#pragma once

struct batch_job {
    /* On the committer, inside the open transaction: the writes it makes
     * through the store join the batch, each behind its own savepoint. It
     * must wait on nothing but the store. */
    void (*run)(void *arg);
    /* On the committer, after the batch: err 0 once it committed, < 0 when
     * it failed and nothing of it is stored. */
    void (*done)(void *arg, int err);
    void *arg;
};
