package message

import (
	"bytes"
	"context"
	"errors"

	"github.com/penstock-mta/penstock/spool"
)

// SignFunc signs a whole message (canonical CRLF, as sent, before
// dot-stuffing) and returns the header field to prepend, ending in CRLF,
// and a note for the delivery log ("d=example.com s=sel").
type SignFunc func(msg []byte) (field []byte, note string, err error)

// SignStage makes a signing function the signing stage: the output
// depends on the message only (PerMessage), so a relayed message is signed
// once for all its transactions.
func SignStage(name string, sign SignFunc) Stage { return signStage{name, sign} }

type signStage struct {
	name string
	sign SignFunc
}

func (s signStage) Name() string             { return s.name }
func (signStage) Scope(*spool.Message) Scope { return PerMessage }

func (s signStage) Apply(_ context.Context, snd *Send) error {
	f, note, err := s.sign(snd.Data)
	if err != nil {
		return err
	}
	if !bytes.HasSuffix(f, []byte("\r\n")) || !isFieldLine(f) {
		return errors.New("the signer returned no header field ending in CRLF")
	}
	snd.Prepend(f)
	if note != "" {
		snd.Note(s.name, note)
	}
	return nil
}
