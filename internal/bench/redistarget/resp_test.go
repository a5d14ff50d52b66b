package redistarget

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, []string{"SET", "k", "", "NX"}))
	if want := "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nNX\r\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReadReply(t *testing.T) {
	in := "+OK\r\n$5\r\nhel\r\n\r\n$-1\r\n:42\r\n*2\r\n$1\r\na\r\n:1\r\n-ERR wrong\r\n+tail\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	check := func(want reply) {
		t.Helper()
		got, err := readReply(r)
		if err != nil || string(got.str) != string(want.str) || got.int != want.int || got.null != want.null {
			t.Fatalf("got %+v %v, want %+v", got, err, want)
		}
	}
	check(reply{str: []byte("OK")})
	check(reply{str: []byte("hel\r\n")}) // bulk strings may hold CRLF
	check(reply{null: true})
	check(reply{int: 42})
	check(reply{}) // arrays are read and dropped
	if _, err := readReply(r); !errors.Is(err, errServer) || !strings.Contains(err.Error(), "ERR wrong") {
		t.Fatalf("error reply: %v", err)
	}
	check(reply{str: []byte("tail")}) // the stream stays in sync after an error reply
	if _, err := readReply(bufio.NewReader(strings.NewReader("?x\r\n"))); err == nil {
		t.Fatal("bad type: no error")
	}
}
