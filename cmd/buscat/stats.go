package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
)

// channelStats is one channel of the prefix with subscribers.
type channelStats struct {
	Channel     string `json:"channel"`
	Topic       string `json:"topic"`
	Subscribers int64  `json:"subscribers"`
}

// statsReport is what stats prints, as JSON with -json.
type statsReport struct {
	Prefix   string         `json:"prefix"`
	Channels []channelStats `json:"channels"`
	// Patterns is PUBSUB NUMPAT: the pattern subscriptions of the whole
	// server, since Redis neither lists them nor counts them by prefix.
	Patterns int64 `json:"patterns"`
}

// stats prints the channels of the prefix that have subscribers, with their
// number of subscribers, and the server's number of pattern subscriptions.
func stats(ctx context.Context, cfg *config, args []string) (err error) {
	if len(args) > 0 {
		return usagef("stats: unexpected argument %q", args[0])
	}
	// The glob a bridge would PSUBSCRIBE to for every topic of the prefix:
	// the prefix with Redis's metacharacters escaped, then "*".
	glob, _, err := bridge.RedisPattern(cfg.prefix, "**", bus.DefaultSeparator)
	if err != nil {
		return fmt.Errorf("stats: %w", err) // "**" is valid: unreachable
	}
	rdb, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeWith(&err, "the Redis client", rdb.Close)

	channels, err := rdb.PubSubChannels(ctx, glob).Result()
	if err != nil {
		return fmt.Errorf("stats: PUBSUB CHANNELS %s: %w", glob, err)
	}
	slices.Sort(channels)
	report := statsReport{Prefix: cfg.prefix, Channels: []channelStats{}}
	if len(channels) > 0 {
		counts, err := rdb.PubSubNumSub(ctx, channels...).Result()
		if err != nil {
			return fmt.Errorf("stats: PUBSUB NUMSUB: %w", err)
		}
		for _, ch := range channels {
			// A channel can lose its last subscriber between the two
			// commands: it is shown with 0.
			report.Channels = append(report.Channels, channelStats{
				Channel: ch, Topic: strings.TrimPrefix(ch, cfg.prefix), Subscribers: counts[ch],
			})
		}
	}
	if report.Patterns, err = rdb.PubSubNumPat(ctx).Result(); err != nil {
		return fmt.Errorf("stats: PUBSUB NUMPAT: %w", err)
	}

	if cfg.json {
		out, err := json.Marshal(report)
		if err != nil {
			return fmt.Errorf("stats: %w", err)
		}
		_, err = fmt.Fprintf(cfg.stdout, "%s\n", out)
		return err
	}
	tw := tabwriter.NewWriter(cfg.stdout, 0, 8, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "SUBSCRIBERS\tCHANNEL\tTOPIC"); err != nil {
		return fmt.Errorf("stats: writing to stdout: %w", err)
	}
	for _, c := range report.Channels {
		if _, err := fmt.Fprintf(tw, "%d\t%s\t%s\n", c.Subscribers, c.Channel, c.Topic); err != nil {
			return fmt.Errorf("stats: writing to stdout: %w", err)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("stats: writing to stdout: %w", err)
	}
	_, err = fmt.Fprintf(cfg.stdout, "%s of prefix %q with subscribers; %s on the server (PUBSUB NUMPAT counts all prefixes)\n",
		plural(len(report.Channels), "channel"), cfg.prefix, plural(int(report.Patterns), "pattern subscription"))
	return err
}

// plural returns "1 channel", "2 channels".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
