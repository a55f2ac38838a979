package bridge

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// pubCmds are the PUBLISH commands of a flusher on a plain *redis.Client,
// made once and sent again flush after flush: building a command through
// go-redis (Pipeliner.Publish) allocates the command, its argument slice
// and the boxing of the channel and of the message, and a pipeline, its
// struct and the closure that fills it; together they were half the
// allocations of an event sent alone (TestBridgedEventAllocs).
//
// A command's arguments point at its own fields (see pubCmd), which the
// flusher sets before each flush, so filling one allocates nothing. One
// message goes out with Client.Process rather than in a pipeline of one,
// which saves the pipeline's slice of commands as well; more go out in one
// reused Pipeliner (whose Exec still copies the commands into a slice it
// allocates: one allocation per flush, whatever its size), and so does a
// message longer than processMax. (A go-redis hook of the client sees a
// lone message as a command, ProcessHook, rather than as a pipeline.)
//
// Only for a *redis.Client (a FailoverClient is one): a ClusterClient
// caches the slot a command hashes to in the command, so a reused
// command would go to the node of its first channel; on a cluster, or a
// Ring, the flusher makes new commands every time (shardSet.publish).
//
// It belongs to the flusher goroutine; after a flush given up on
// (gate.do returned false) it must not be touched again.
type pubCmds struct {
	rdb  *redis.Client
	pipe redis.Pipeliner
	cmds []*pubCmd
	send []redis.Cmder // cmds[:n] as Cmders, for BatchProcess
}

// pubCmd is one reusable PUBLISH: its arguments are "publish", &channel
// and &msg, which go-redis writes through (a *string, and an
// encoding.BinaryMarshaler), so that changing the fields changes the
// command without boxing anything.
type pubCmd struct {
	cmd     *redis.IntCmd
	channel string
	msg     message
}

// message is a PUBLISH's message argument: go-redis writes a []byte as is,
// but boxing one in an interface allocates; a *message, which it writes
// through MarshalBinary, does not.
type message struct{ b []byte }

// MarshalBinary returns the bytes of m, not a copy: go-redis writes them
// to its buffer at once.
func (m *message) MarshalBinary() ([]byte, error) { return m.b, nil }

// String returns the bytes of m as text, for hooks that print commands.
func (m *message) String() string { return string(m.b) }

// processMax is the longest message sent alone with Process rather than
// in a pipeline of one: go-redis gives pipelines connections of their own
// pool, with larger buffers (128 KiB by default, 32 KiB for the others),
// which a coalesced batch of tens of kilobytes is written through in fewer
// system calls.
const processMax = 4 << 10

// newPubCmds returns the reusable commands for rdb, or nil if rdb is not
// a *redis.Client.
func newPubCmds(rdb redis.UniversalClient) *pubCmds {
	c, ok := rdb.(*redis.Client)
	if !ok {
		return nil
	}
	return &pubCmds{rdb: c, pipe: c.Pipeline()}
}

// set makes the k-th command, k at most the number set since the last
// exec, publish msg on channel.
func (pc *pubCmds) set(ctx context.Context, k int, channel string, msg []byte) {
	if k == len(pc.cmds) {
		c := &pubCmd{}
		c.cmd = redis.NewIntCmd(ctx, "publish", &c.channel, &c.msg)
		pc.cmds = append(pc.cmds, c)
	}
	c := pc.cmds[k]
	c.channel, c.msg.b = channel, msg
	c.cmd.SetErr(nil)
	c.cmd.SetVal(0)
}

// exec sends the first n commands in one round trip, with ctx, and
// returns them (valid until the next set) and the first error, as
// Pipelined does.
func (pc *pubCmds) exec(ctx context.Context, n int) ([]redis.Cmder, error) {
	pc.send = pc.send[:0]
	for _, c := range pc.cmds[:n] {
		pc.send = append(pc.send, c.cmd)
	}
	var err error
	if n == 1 && len(pc.cmds[0].msg.b) <= processMax {
		err = pc.rdb.Process(ctx, pc.send[0])
	} else {
		_ = pc.pipe.BatchProcess(ctx, pc.send...)
		_, err = pc.pipe.Exec(ctx)
	}
	// Let go of the messages (arena or raw payloads) until the next
	// flush.
	for _, c := range pc.cmds[:n] {
		c.channel, c.msg.b = "", nil
	}
	return pc.send, err
}
