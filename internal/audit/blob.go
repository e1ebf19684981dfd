package audit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/appendblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// Container is where Azure writes AuditEvent logs.
const Container = "insights-logs-auditevent"

// CheckpointContainer is where Keyward delivers signed checkpoints (see
// Checkpointer), in the same path layout as the records, in blobs named
// checkpoints.json: apart from Azure's container, whose readers expect
// records only.
const CheckpointContainer = "keyward-audit-checkpoints"

// BlobSink appends records to append blobs in Azure Blob storage (or
// Azurite), in Azure's container and path layout, and checkpoints to
// CheckpointContainer.
type BlobSink struct {
	container   *container.Client
	checkpoints *container.Client
}

// NewBlobSink returns a sink for the account at endpoint (e.g.
// https://acct.blob.core.windows.net or http://127.0.0.1:10000/devstoreaccount1)
// with a shared key, or a SAS token when key is empty.
func NewBlobSink(endpoint, account, key, sas string, opts *azcore.ClientOptions) (*BlobSink, error) {
	var so *service.ClientOptions
	if opts != nil {
		so = &service.ClientOptions{ClientOptions: *opts}
	}
	var svc *service.Client
	var err error
	if key != "" {
		cred, cerr := service.NewSharedKeyCredential(account, key)
		if cerr != nil {
			return nil, fmt.Errorf("audit: storage credential: %w", cerr)
		}
		svc, err = service.NewClientWithSharedKeyCredential(endpoint, cred, so)
	} else {
		u := endpoint
		if sas != "" {
			u += "?" + sas
		}
		svc, err = service.NewClientWithNoCredential(u, so)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: storage client: %w", err)
	}
	return &BlobSink{container: svc.NewContainerClient(Container), checkpoints: svc.NewContainerClient(CheckpointContainer)}, nil
}

// Append implements Sink: it creates the container and the append blob
// when they are missing, then appends one block.
func (b *BlobSink) Append(ctx context.Context, path string, lines []byte) error {
	return appendBlock(ctx, b.container, path, lines)
}

// AppendCheckpoints implements CheckpointSink, in CheckpointContainer.
func (b *BlobSink) AppendCheckpoints(ctx context.Context, path string, lines []byte) error {
	return appendBlock(ctx, b.checkpoints, path, lines)
}

func appendBlock(ctx context.Context, c *container.Client, path string, lines []byte) error {
	ab := c.NewAppendBlobClient(path)
	for attempt := 0; ; attempt++ {
		_, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(lines)), nil)
		if err == nil {
			return nil
		}
		if attempt > 1 {
			return fmt.Errorf("audit: appending to %s: %w", path, err)
		}
		switch {
		case bloberror.HasCode(err, bloberror.ContainerNotFound):
			if _, err := c.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
				return fmt.Errorf("audit: creating container: %w", err)
			}
			fallthrough
		case bloberror.HasCode(err, bloberror.BlobNotFound):
			_, err := ab.Create(ctx, &appendblob.CreateOptions{AccessConditions: &blob.AccessConditions{
				ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}}})
			if err != nil && !bloberror.HasCode(err, bloberror.BlobAlreadyExists) {
				return fmt.Errorf("audit: creating %s: %w", path, err)
			}
		default:
			return fmt.Errorf("audit: appending to %s: %w", path, err)
		}
	}
}
