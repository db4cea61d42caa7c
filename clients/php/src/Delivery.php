<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * What the collector did with a report.
 */
final class Delivery
{
    /** Stored and counted. */
    public const ACCEPTED = 'accepted';
    /** Already stored (an earlier attempt got through): not counted again. */
    public const DUPLICATE = 'duplicate';

    /**
     * @param string       $status   {@see self::ACCEPTED} or {@see self::DUPLICATE}
     * @param list<string> $ignored  names the collector's catalog does not have, dropped
     *                               (`attributes.colour`)
     * @param int          $attempts how many attempts it took
     */
    public function __construct(
        public readonly string $status,
        public readonly array $ignored,
        public readonly int $attempts,
    ) {
    }
}
