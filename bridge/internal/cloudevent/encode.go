package cloudevent

import (
	"encoding/base64"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// maxSortedExtensions is how many extensions Append sorts in an array on
// the stack; more are sorted in a slice on the heap.
const maxSortedExtensions = 64

// Append appends the structured-mode JSON encoding of ev to dst and
// returns the extended slice. The members come in a fixed order
// (specversion, id, source, type, time, datacontenttype, buslineseq, the
// extensions sorted by name, data or data_base64, then buslineepoch), so
// equal events encode to equal bytes. Data is written inline when the content type is
// JSON and Data is valid JSON, as a string when the content type is text/*
// and Data is valid UTF-8, and as data_base64 otherwise; no data member
// when Data is empty. A zero Time, Seq or Epoch is left out.
//
// It does not validate ev (see Validate): an invalid ev makes a message
// receivers reject. It does not allocate when dst has room and ev has at
// most 64 extensions. It is safe for concurrent use.
func Append(dst []byte, ev *Event) []byte {
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = appendString(dst, ev.ID)
	if ev.IDSeq {
		dst = append(dst[:len(dst)-1], ':')
		dst = strconv.AppendUint(dst, ev.Seq, 10)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, ev.Source)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, ev.Type)
	if !ev.Time.IsZero() {
		dst = append(dst, `,"time":"`...)
		dst = ev.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if ev.DataContentType != "" {
		dst = append(dst, `,"datacontenttype":`...)
		dst = appendString(dst, ev.DataContentType)
	}
	if ev.Seq != 0 {
		dst = append(dst, `,"`+SeqAttribute+`":"`...)
		dst = strconv.AppendUint(dst, ev.Seq, 10)
		dst = append(dst, '"')
	}
	dst = appendExtensions(dst, ev.Extensions)
	if len(ev.Data) > 0 {
		switch {
		case IsJSON(ev.DataContentType) && validJSON(ev.Data):
			dst = append(dst, `,"data":`...)
			dst = append(dst, ev.Data...)
		case isText(ev.DataContentType) && utf8.Valid(ev.Data):
			dst = append(dst, `,"data":`...)
			dst = appendString(dst, ev.Data)
		default:
			dst = append(dst, `,"data_base64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, ev.Data)
			dst = append(dst, '"')
		}
	}
	if ev.Epoch != 0 {
		dst = append(dst, `,"`+EpochAttribute+`":"`...)
		dst = appendHex16(dst, ev.Epoch)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendExtensions appends the extensions sorted by name, skipping the
// reserved names.
func appendExtensions(dst []byte, ext map[string]string) []byte {
	if len(ext) == 0 {
		return dst
	}
	var arr [maxSortedExtensions]string
	keys := arr[:0]
	for k := range ext {
		if !reserved(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = append(dst, ',')
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, ext[k])
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendHex16 appends v as 16 lowercase hex digits.
func appendHex16(dst []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[v>>uint(shift)&0xf])
	}
	return dst
}

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, everything else as it is (s is expected to be UTF-8:
// Validate checks).
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
