<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * No answer: the connection failed, timed out or broke off.
 */
final class TransportException extends \RuntimeException
{
    /**
     * @param string $message   what went wrong
     * @param bool   $transient whether another attempt may succeed (a refused
     *                          connection or a timeout may; a malformed URL
     *                          will not)
     */
    public function __construct(string $message, public readonly bool $transient = true)
    {
        parent::__construct($message);
    }
}
