package redistarget

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// conn is one RESP2 connection: one command at a time.
type conn struct {
	nc  net.Conn
	r   *bufio.Reader
	buf []byte
}

func dial(ctx context.Context, addr string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("redistarget: dial %s: %w", addr, err)
	}
	return &conn{nc: nc, r: bufio.NewReader(nc)}, nil
}

func (c *conn) close() error { return c.nc.Close() }

// reply is a decoded RESP reply (arrays are read and dropped).
type reply struct {
	str  []byte // simple string or bulk string
	int  int64
	null bool
}

var (
	// errServer is an error reply (-ERR ...).
	errServer = errors.New("redistarget: server error")
	// errProtocol is a reply that is not RESP2.
	errProtocol = errors.New("redistarget: bad reply")
)

// do sends one command and reads its reply. The connection's deadline is
// ctx's, and ending ctx interrupts the call.
func (c *conn) do(ctx context.Context, args ...string) (reply, error) {
	dl, _ := ctx.Deadline() // zero: no deadline
	_ = c.nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.buf = appendCommand(c.buf[:0], args)
	if _, err := c.nc.Write(c.buf); err != nil {
		return reply{}, c.ioErr(ctx, err)
	}
	r, err := readReply(c.r)
	if err != nil && !errors.Is(err, errServer) {
		return r, c.ioErr(ctx, err)
	}
	return r, err
}

func (c *conn) ioErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("redistarget: %w", err)
}

// appendCommand encodes args as a RESP array of bulk strings.
func appendCommand(b []byte, args []string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// readReply decodes one reply.
func readReply(r *bufio.Reader) (reply, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return reply{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return reply{}, fmt.Errorf("%w: line %q", errProtocol, line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return reply{str: append([]byte(nil), body...)}, nil
	case '-':
		return reply{}, fmt.Errorf("%w: %s", errServer, body)
	case ':':
		n, err := strconv.ParseInt(string(body), 10, 64)
		return reply{int: n}, err
	case '$':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return reply{}, err
		}
		if n < 0 {
			return reply{null: true}, nil
		}
		data := make([]byte, n+2)
		if _, err := io.ReadFull(r, data); err != nil {
			return reply{}, err
		}
		return reply{str: data[:n]}, nil
	case '*':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return reply{}, err
		}
		if n < 0 {
			return reply{null: true}, nil
		}
		for range n {
			if _, err := readReply(r); err != nil && !errors.Is(err, errServer) {
				return reply{}, err
			}
		}
		return reply{}, nil
	}
	return reply{}, fmt.Errorf("%w: type %q", errProtocol, line[0])
}
