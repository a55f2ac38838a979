package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/busline/bus/bridge/internal/plural"
	"github.com/redis/go-redis/v9"
)

// maxClaimRounds bounds the XAUTOCLAIM calls of one claim pass, so that a
// huge pending list does not keep the reader from new entries for long;
// the next pass goes on.
const maxClaimRounds = 16

// runGroup reads a Group route as consumer st.consumer of group r.group.
//
// It first re-reads its own pending entries (XREADGROUP from ID 0): those
// delivered to this consumer name before a restart, or before a read whose
// answer was lost, and never acknowledged. Then it reads new entries (ID
// ">"), acknowledging each batch with one XACK once every entry of it has
// been published on the local bus, and every ClaimIdle/2 it takes over the
// entries other consumers left unacknowledged for ClaimIdle (XAUTOCLAIM).
// After any failed read it re-reads its pending entries again.
func (sr *streamReader) runGroup() {
	br, st, r := sr.br, sr.st, sr.r
	ctx := sr.reading.ctx
	defer func() {
		if len(sr.unacked) > 0 {
			sr.ack(sr.closeCtx)
		}
	}()
	started := false
	if !sr.createGroup(&started) {
		return
	}
	pel := "0" // where the re-reading of pending entries is; "" when done
	failed := false
	claimEvery := max(br.cfg.ClaimIdle/2, minWait)
	nextClaim := time.Now()
	for ctx.Err() == nil {
		if len(sr.unacked) > 0 && !sr.ack(ctx) {
			if !sleep(ctx, sr.back.next()) {
				return
			}
			continue
		}
		if pel == "" && !time.Now().Before(nextClaim) {
			if !sr.claim(ctx) {
				<-ctx.Done() // the bus is closed: wait for Close
				return
			}
			nextClaim = time.Now().Add(claimEvery)
		}
		id, block := ">", min(br.cfg.StreamBlock, max(time.Until(nextClaim), minWait))
		if pel != "" {
			id, block = pel, -1 // -1: no BLOCK; pending entries are there or not
		}
		args := &redis.XReadGroupArgs{
			Group:    r.group,
			Consumer: st.consumer,
			Streams:  []string{r.key, id},
			Count:    int64(br.cfg.BatchSize),
			Block:    block,
		}
		var res []redis.XStream
		var err error
		if !sr.reads.do(ctx, func() { res, err = br.rdb.XReadGroup(ctx, args).Result() }) {
			return // Close, with Redis still to answer: the entries it reads stay pending
		}
		if errors.Is(err, redis.Nil) { // nothing new within the block time
			sr.r.readConn.up() // Redis answered
			continue
		}
		if err != nil {
			pel = "0"
			if isNoGroup(err) {
				// The stream or the group was deleted (or Redis lost
				// its data): make them again.
				if !sr.createGroup(&started) {
					return
				}
				continue
			}
			failed = true
			if !sr.fail(fmt.Errorf("%w: XREADGROUP %q group %q: %w", ErrStreamRead, r.key, r.group, err)) {
				return
			}
			continue
		}
		sr.resumed(&failed)
		var msgs []redis.XMessage
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
		}
		if pel != "" {
			if len(msgs) == 0 {
				pel = ""
				continue
			}
			pel = msgs[len(msgs)-1].ID
		}
		if !sr.deliver(ctx, msgs, pel != "") {
			<-ctx.Done()
			return
		}
		if ctx.Err() != nil {
			return // acknowledged with Close's context, above
		}
		sr.ack(ctx) // on failure, retried before the next read
	}
}

// createGroup creates the route's consumer group (and the stream) if they
// do not exist, retrying until it can or the bridge closes. New groups
// start at the end of the stream; create the group beforehand with ID 0
// to have the first members read older entries.
func (sr *streamReader) createGroup(started *bool) bool {
	br, r := sr.br, sr.r
	ctx := sr.reading.ctx
	for {
		var err error
		if !sr.reads.do(ctx, func() { err = br.rdb.XGroupCreateMkStream(ctx, r.key, r.group, "$").Err() }) {
			return false
		}
		if err == nil || strings.HasPrefix(err.Error(), "BUSYGROUP") {
			if !*started {
				*started = true
				sr.setStart(true, nil)
			}
			return true
		}
		err = fmt.Errorf("%w: XGROUP CREATE %q %q: %w", ErrStreamRead, r.key, r.group, err)
		if isRefusal(err) && !*started {
			sr.setStart(false, chain(ErrSubscribe, "", err))
		}
		if !sr.fail(err) {
			return false
		}
	}
}

func isNoGroup(err error) bool {
	return isRefusal(err) && strings.HasPrefix(err.Error(), "NOGROUP")
}

// deliver publishes msgs on the local bus in order and records the IDs of
// those handled for acknowledgement; an entry whose handling failed is
// dead-lettered or left pending (settleGroup). With skipHandled, entries already handled and
// waiting for their acknowledgement are skipped: they come back when the
// reader re-reads its pending entries. It stops early, leaving the rest
// pending, when the bridge is closing, and returns false when the bus is
// closed.
func (sr *streamReader) deliver(ctx context.Context, msgs []redis.XMessage, skipHandled bool) bool {
	var handled map[string]bool
	if skipHandled && len(sr.unacked) > 0 {
		handled = make(map[string]bool, len(sr.unacked))
		for _, id := range sr.unacked {
			handled[id] = true
		}
	}
	for _, m := range msgs {
		if ctx.Err() != nil {
			return true
		}
		if handled[m.ID] {
			continue
		}
		switch sr.handle(m) {
		case entryStopped:
			return false
		case entryAbandoned:
			return true // pending still
		case entryFailed:
			sr.settleGroup(ctx, m)
			continue
		}
		sr.unacked = append(sr.unacked, m.ID)
	}
	return true
}

// ack acknowledges the entries handled, in one XACK, and reports whether
// it could. Entries Redis refuses to acknowledge (NOPERM, NOGROUP) are
// forgotten, since retrying cannot help: they will be delivered again.
func (sr *streamReader) ack(ctx context.Context) bool {
	br, st, r := sr.br, sr.st, sr.r
	if len(sr.unacked) == 0 {
		return true // every entry failed, or was handled before
	}
	var n int64
	var err, ackErr error // n and ackErr are the call's: not read here if do gives up on it
	if sr.saves.do(ctx, func() { n, ackErr = br.rdb.XAck(ctx, r.key, r.group, sr.unacked...).Result() }) {
		err = ackErr
	} else {
		err = ctx.Err() // Close's context ended: acknowledged or not, we cannot tell
	}
	if err != nil && sr.stopped(ctx) {
		return false // acknowledged again, with Close's context, as the reader returns
	}
	if err != nil {
		err = fmt.Errorf("%w: XACK %q group %q, %s: %w", ErrAck, r.key, r.group, plural.Of(uint64(len(sr.unacked)), "entry"), err)
		br.rep.report(err)
		if isRefusal(err) {
			sr.unacked = sr.unacked[:0]
		}
		return false
	}
	st.acked.Add(uint64(n))
	clear(sr.unacked)
	sr.unacked = sr.unacked[:0]
	sr.back.reset()
	return true
}

// claim takes over the entries that other consumers of the group (dead,
// or slower than ClaimIdle) left unacknowledged for ClaimIdle, publishes
// them and acknowledges them. It returns false when the bus is closed.
func (sr *streamReader) claim(ctx context.Context) bool {
	br, st, r := sr.br, sr.st, sr.r
	start := "0-0"
	for range maxClaimRounds {
		if ctx.Err() != nil {
			return true
		}
		var msgs []redis.XMessage
		var next string
		var deleted []string
		var err error
		if !sr.reads.do(ctx, func() {
			msgs, next, deleted, err = br.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
				Stream:   r.key,
				Group:    r.group,
				Consumer: st.consumer,
				MinIdle:  br.cfg.ClaimIdle,
				Start:    start,
				Count:    int64(br.cfg.BatchSize),
			}).Result()
		}) {
			return true // Close's context ended
		}
		if err != nil {
			if ctx.Err() == nil {
				br.rep.report(fmt.Errorf("%w: XAUTOCLAIM %q group %q: %w", ErrStreamRead, r.key, r.group, err))
			}
			return true // the next read fails too, or the next pass works
		}
		if n := len(deleted); n > 0 {
			st.trimmed.Add(uint64(n))
			br.rep.drop(ErrTrimmed, uint64(n), nil)
		}
		if len(msgs) > 0 {
			st.claimed.Add(uint64(len(msgs)))
			if !sr.deliver(ctx, msgs, true) {
				return false
			}
			if ctx.Err() != nil {
				return true
			}
			sr.ack(ctx)
		}
		if next == "0-0" || next == "" {
			return true
		}
		start = next
	}
	return true
}
