// Command verify checks a datatrust checkpoint and proofs with Go's own
// golang.org/x/mod/sumdb/note and sumdb/tlog packages, which were not written
// for this project: if they accept our bytes, third-party tools can too.
//
// Usage:
//
//	verify -key KEYFILE -checkpoint NOTEFILE [-origin ORIGIN]
//	       [-inclusion PROOF.json [-entry BODYFILE]]
//	       [-old-checkpoint NOTEFILE -consistency PROOF.json]
//
// KEYFILE holds the note verifier key (GET /v1/ledger/verifier-key), NOTEFILE a
// signed checkpoint (GET /v1/ledger/checkpoint), PROOF.json the JSON of
// GET /v1/ledger/proofs/inclusion or /proofs/consistency (hex hashes), and
// BODYFILE the canonical bytes of the proven entry. It prints "OK" and exits 0
// when everything verifies, and exits 1 with the reason otherwise.
//
// Build offline with the Debian sources: GO111MODULE=off GOPATH=/usr/share/gocode go build.
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

type inclusionProof struct {
	Seq      int64    `json:"seq"`
	Size     int64    `json:"size"`
	LeafHash string   `json:"leaf_hash"`
	Proof    []string `json:"proof"`
}

type consistencyProof struct {
	From  int64    `json:"from"`
	To    int64    `json:"to"`
	Proof []string `json:"proof"`
}

func main() {
	keyFile := flag.String("key", "", "file holding the note verifier key")
	cpFile := flag.String("checkpoint", "", "file holding the signed checkpoint")
	origin := flag.String("origin", "", "expected checkpoint origin (default: the key name)")
	inclusionFile := flag.String("inclusion", "", "inclusion proof JSON")
	entryFile := flag.String("entry", "", "canonical bytes of the proven entry")
	oldCpFile := flag.String("old-checkpoint", "", "an earlier signed checkpoint")
	consistencyFile := flag.String("consistency", "", "consistency proof JSON from the old to the new checkpoint")
	flag.Parse()
	if err := run(*keyFile, *cpFile, *origin, *inclusionFile, *entryFile, *oldCpFile, *consistencyFile); err != nil {
		fmt.Fprintln(os.Stderr, "FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

func run(keyFile, cpFile, origin, inclusionFile, entryFile, oldCpFile, consistencyFile string) error {
	if keyFile == "" || cpFile == "" {
		return errors.New("-key and -checkpoint are required")
	}
	keyText, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(keyText)))
	if err != nil {
		return fmt.Errorf("verifier key: %w", err)
	}
	if origin == "" {
		origin = verifier.Name()
	}
	cp, err := openCheckpoint(cpFile, verifier, origin)
	if err != nil {
		return err
	}
	if inclusionFile != "" {
		if err := checkInclusion(inclusionFile, entryFile, cp); err != nil {
			return err
		}
	}
	if consistencyFile != "" {
		if oldCpFile == "" {
			return errors.New("-consistency needs -old-checkpoint")
		}
		old, err := openCheckpoint(oldCpFile, verifier, origin)
		if err != nil {
			return err
		}
		if err := checkConsistency(consistencyFile, old, cp); err != nil {
			return err
		}
	}
	return nil
}

// openCheckpoint verifies the note signature with note.Open and parses the C2SP
// tlog-checkpoint body: origin line, decimal tree size, base64 root hash.
func openCheckpoint(path string, verifier note.Verifier, origin string) (checkpoint, error) {
	msg, err := os.ReadFile(path)
	if err != nil {
		return checkpoint{}, err
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return checkpoint{}, fmt.Errorf("%s: note.Open: %w", path, err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return checkpoint{}, fmt.Errorf("%s: checkpoint body needs origin, size and root lines", path)
	}
	if lines[0] != origin {
		return checkpoint{}, fmt.Errorf("%s: origin %q, expected %q", path, lines[0], origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("%s: tree size %q is not a decimal number", path, lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("%s: root hash is not base64 of %d bytes", path, tlog.HashSize)
	}
	cp := checkpoint{origin: lines[0], size: size}
	copy(cp.root[:], raw)
	return cp, nil
}

func parseHash(text string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := hex.DecodeString(text)
	if err != nil || len(raw) != tlog.HashSize {
		return h, fmt.Errorf("%q is not a hex hash", text)
	}
	copy(h[:], raw)
	return h, nil
}

func parseHashes(texts []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, len(texts))
	for _, text := range texts {
		h, err := parseHash(text)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func readJSON(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, into)
}

// checkInclusion runs tlog.CheckRecord (RFC 6962 audit path) against the checkpoint root.
func checkInclusion(path, entryFile string, cp checkpoint) error {
	var p inclusionProof
	if err := readJSON(path, &p); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if p.Size != cp.size {
		return fmt.Errorf("inclusion proof is for tree size %d, checkpoint has %d", p.Size, cp.size)
	}
	leaf, err := parseHash(p.LeafHash)
	if err != nil {
		return err
	}
	if entryFile != "" {
		body, err := os.ReadFile(entryFile)
		if err != nil {
			return err
		}
		if tlog.RecordHash(body) != leaf {
			return fmt.Errorf("entry bytes do not hash to leaf_hash %s", p.LeafHash)
		}
	}
	proof, err := parseHashes(p.Proof)
	if err != nil {
		return err
	}
	if err := tlog.CheckRecord(proof, cp.size, cp.root, p.Seq, leaf); err != nil {
		return fmt.Errorf("inclusion of entry %d in tree %d: %w", p.Seq, cp.size, err)
	}
	return nil
}

// checkConsistency runs tlog.CheckTree (RFC 6962 consistency proof) between two checkpoints.
func checkConsistency(path string, old, cp checkpoint) error {
	var p consistencyProof
	if err := readJSON(path, &p); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if p.From != old.size || p.To != cp.size {
		return fmt.Errorf("consistency proof is for sizes %d->%d, checkpoints have %d->%d", p.From, p.To, old.size, cp.size)
	}
	proof, err := parseHashes(p.Proof)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(proof, cp.size, cp.root, old.size, old.root); err != nil {
		return fmt.Errorf("consistency of tree %d with tree %d: %w", old.size, cp.size, err)
	}
	return nil
}
