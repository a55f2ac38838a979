package main

import (
	"errors"

	"github.com/busline/bus/bridge"
)

// errNotMessage is the encode error of a payload that is not a message.
var errNotMessage = errors.New("buscat: payload is not a message")

// message is the payload buscat publishes on its own bus: bytes and the
// content type to put in the envelope.
type message struct {
	data        []byte
	contentType string
}

// wireCodec is the bridge.Codec of buscat's routes. It sends a message's
// bytes exactly, where bridge.DefaultCodec would re-encode JSON, and decodes
// every imported message into its []byte: buscat decides how to print it
// from the bytes and the content type in the event's Meta.
type wireCodec struct{}

var _ bridge.Codec = wireCodec{}

// Encode returns m's bytes and content type. The bridge keeps the slice:
// pub never modifies it after publishing.
func (wireCodec) Encode(payload any) ([]byte, string, error) {
	m, ok := payload.(message)
	if !ok {
		// Only pub publishes on buscat's bus, and always a message.
		return nil, "", errNotMessage
	}
	return m.data, m.contentType, nil
}

// Decode returns data unchanged.
func (wireCodec) Decode(data []byte, _ string) (any, error) {
	return data, nil
}
