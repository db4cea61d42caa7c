<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * A report the collector would refuse: the mistakes are listed, every one
 * of them, so that one run shows them all.
 */
final class InvalidReportException extends \InvalidArgumentException
{
    /**
     * @param list<string> $problems
     */
    public function __construct(private readonly array $problems)
    {
        parent::__construct("the report is not valid:\n  " . implode("\n  ", $problems));
    }

    /**
     * Every mistake found, one line each (`field: what is wrong`).
     *
     * @return list<string>
     */
    public function problems(): array
    {
        return $this->problems;
    }
}
