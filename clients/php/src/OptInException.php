<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * The opt-in file could not be read, parsed or written. Whatever the cause,
 * an unreadable or invalid file means "do not send".
 */
final class OptInException extends \RuntimeException
{
}
