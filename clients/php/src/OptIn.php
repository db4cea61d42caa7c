<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * What the opt-in file says: the administrator's choice, the install's
 * random id and, optionally, the collector to send to. Immutable.
 */
final class OptIn
{
    /**
     * @param bool        $send       whether the administrator agreed to send reports
     * @param string|null $instanceId the install's random id (lower-case UUID), generated on opt-in
     * @param string|null $collector  collector base URL, when the host application does not set one
     */
    public function __construct(
        public readonly bool $send = false,
        public readonly ?string $instanceId = null,
        public readonly ?string $collector = null,
    ) {
    }

    /**
     * The opted-in state: `send` on, and an instance id generated now if
     * there was none (an existing id is kept). `$collector`, when given,
     * replaces the recorded collector.
     *
     * @throws \Exception when no source of randomness is available
     */
    public function optedIn(?string $collector = null): self
    {
        return new self(true, $this->instanceId ?? Uuid::v4(), $collector ?? $this->collector);
    }

    /**
     * The opted-out state: `send` off. The instance id is kept, so that the
     * administrator can still ask the collector to forget the install.
     */
    public function optedOut(): self
    {
        return new self(false, $this->instanceId, $this->collector);
    }

    /**
     * The state after the collector forgot the install: opted out and
     * without an id, so that a later opt-in gets a new id nothing links to
     * the old one.
     */
    public function forgotten(): self
    {
        return new self(false, null, $this->collector);
    }
}
