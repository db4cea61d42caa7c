<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * A collector's answer, reduced to what the client uses.
 */
final class Response
{
    /**
     * @param int         $status     the HTTP status
     * @param string      $body       the body (at most the transport's limit)
     * @param string|null $retryAfter the raw `Retry-After` header, if any
     */
    public function __construct(
        public readonly int $status,
        public readonly string $body,
        public readonly ?string $retryAfter = null,
    ) {
    }
}
