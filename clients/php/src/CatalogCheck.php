<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * What a check of a report against the collector's catalog found, as
 * `anonstats send` reports it before sending.
 */
final class CatalogCheck
{
    /**
     * @param list<string> $errors   mistakes the collector would refuse, and names it would
     *                               drop (almost certainly typing mistakes)
     * @param list<string> $warnings attribute values it does not list, stored as `other`
     */
    public function __construct(
        public readonly array $errors,
        public readonly array $warnings,
    ) {
    }

    /**
     * Whether the report may be sent (warnings do not stop it).
     */
    public function isOk(): bool
    {
        return $this->errors === [];
    }
}
