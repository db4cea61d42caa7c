<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * A request to the collector did not succeed. Thrown by {@see Collector};
 * {@see Client} catches it and returns false.
 */
final class SendException extends \RuntimeException
{
    /**
     * @param string   $message  what happened, in one line
     * @param int|null $status   the collector's final HTTP status, when it answered
     * @param int      $attempts attempts made
     */
    public function __construct(
        string $message,
        public readonly ?int $status = null,
        public readonly int $attempts = 1,
    ) {
        parent::__construct($message);
    }
}
